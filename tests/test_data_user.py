"""Users' own data: .npz and .csv files, good and bad, and the splits and scaling they get."""

import numpy as np
import pytest

from mlpsearch.engine.data import DataError, load_dataset
from mlpsearch.engine.data import datasets as data

pytestmark = pytest.mark.usefixtures("isolated_data")  # never the real cache or the network


def make_xy(n=100, d=5, labels=(-3, 7, 42), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 10 + 3
    y = np.asarray(labels)[np.arange(n) % len(labels)]
    return X, y


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def save_csv(path, text):
    path.write_text(text)
    return path


# --- .npz ------------------------------------------------------------------------------------


def test_npz_arbitrary_integer_labels_map_to_0_k(tmp_path):
    X, y = make_xy(n=100)
    ds = load_dataset(save_npz(tmp_path / "mine.npz", X=X, y=y))
    assert ds.name == "mine"
    assert ds.classes == ("-3", "7", "42")
    assert ds.n_classes == 3 and ds.n_features == 5
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (64, 16, 20)
    for Xp, yp in ((ds.X_train, ds.y_train), (ds.X_val, ds.y_val), (ds.X_test, ds.y_test)):
        assert Xp.dtype == np.float32 and yp.dtype == np.int64
        assert set(np.unique(yp)) == {0, 1, 2}
    assert "mine.npz" in ds.source and "\n" not in ds.source


def test_npz_images_are_flattened_and_int_labels_accepted(tmp_path):
    X = np.random.default_rng(1).integers(0, 256, size=(50, 4, 4), dtype=np.uint8)
    y = (np.arange(50) % 2).astype(np.uint8)
    ds = load_dataset(save_npz(tmp_path / "img.npz", X=X, y=y.reshape(-1, 1)))
    assert ds.n_features == 16 and ds.classes == ("0", "1")


def test_npz_explicit_test_part_is_used(tmp_path):
    X, y = make_xy(n=60)
    Xt, yt = make_xy(n=9, seed=5)
    ds = load_dataset(save_npz(tmp_path / "t.npz", X=X, y=y, X_test=Xt, y_test=yt), scale="none")
    np.testing.assert_allclose(ds.X_test, Xt.astype(np.float32))
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test)) == (60, 9)
    assert "X_test" in ds.source


def test_rows_are_split_disjointly_and_completely(tmp_path):
    n = 203
    X = np.column_stack([np.arange(n), np.ones(n)])  # column 0 identifies the row
    y = np.arange(n) % 4
    ds = load_dataset(save_npz(tmp_path / "ids.npz", X=X, y=y), scale="none", seed=3)
    ids = [set(part[:, 0].astype(int).tolist()) for part in (ds.X_train, ds.X_val, ds.X_test)]
    assert ids[0].isdisjoint(ids[1]) and ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    assert set().union(*ids) == set(range(n))
    # labels travel with their rows
    for part_X, part_y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        np.testing.assert_array_equal(part_X[:, 0].astype(int) % 4, part_y)


def test_seed_moves_validation_but_not_test(tmp_path):
    X, y = make_xy(n=120)
    path = save_npz(tmp_path / "s.npz", X=X, y=y)
    a, b, a2 = (load_dataset(path, seed=s, scale="none") for s in (0, 1, 0))
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.X_val, a2.X_val)
    assert not np.array_equal(a.X_val, b.X_val)


def test_standard_scaling_is_fitted_on_training_part(tmp_path):
    X, y = make_xy(n=150)
    X[:, 2] = 7.0  # constant feature
    path = save_npz(tmp_path / "z.npz", X=X, y=y)
    raw, std = load_dataset(path, scale="none"), load_dataset(path, scale="standard")
    mean = raw.X_train.astype(np.float64).mean(axis=0)
    sd = raw.X_train.astype(np.float64).std(axis=0)
    sd[2] = 1.0
    np.testing.assert_allclose(std.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.delete(std.X_train.std(axis=0), 2), 1, rtol=1e-4)
    assert np.all(std.X_train[:, 2] == 0)
    np.testing.assert_allclose(std.X_val, (raw.X_val - mean) / sd, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std.X_test, (raw.X_test - mean) / sd, rtol=1e-4, atol=1e-5)


def test_unit_scaling_is_min_max_of_training_part(tmp_path):
    X, y = make_xy(n=150)
    X[:, 0] = 4.0
    ds = load_dataset(save_npz(tmp_path / "u.npz", X=X, y=y), scale="unit")
    np.testing.assert_allclose(ds.X_train[:, 1:].min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(ds.X_train[:, 1:].max(axis=0), 1, atol=1e-6)
    assert np.all(ds.X_train[:, 0] == 0)


def npz_cases():
    X, y = make_xy(n=30)
    Xnan = X.copy()
    Xnan[4, 1] = np.nan
    Xinf = X.copy()
    Xinf[2, 0] = np.inf
    return {
        "missing y": ({"X": X}, "missing array 'y'"),
        "objects": ({"X": np.array([{"a": 1}] * 30, dtype=object), "y": y}, "Python objects"),
        "nan": ({"X": Xnan, "y": y}, "NaN or infinite values in 1 rows (first: row 5, feature 2"),
        "inf": ({"X": Xinf, "y": y}, "NaN or infinite"),
        "fractional labels": ({"X": X, "y": y + 0.5}, "must be integers"),
        "byte-string labels": ({"X": X, "y": y.astype("S")}, "must be integers or text"),
        "lengths": ({"X": X, "y": y[:-1]}, "mismatched lengths: X has 30 rows, y 29 labels"),
        "one class": ({"X": X, "y": np.full(30, 4)}, "only one class (label 4)"),
        "no rows": ({"X": np.zeros((0, 3)), "y": np.zeros(0, int)}, "empty data"),
        "1-D X": ({"X": np.arange(30.0), "y": y}, "must have shape (samples, features)"),
        "text X": ({"X": np.array([["a"]] * 30), "y": y}, "must be numeric"),
        "half test": ({"X": X, "y": y, "X_test": X}, "given together"),
        "test width": ({"X": X, "y": y, "X_test": X[:, :2], "y_test": y}, "X_test has 2 feat"),
    }


@pytest.mark.parametrize("case", list(npz_cases()))
def test_bad_npz(tmp_path, case):
    arrays, phrase = npz_cases()[case]
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert phrase in str(err.value)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "empty file"),
        (b"X,y\n1,2\n", "not a .npz archive"),
        (b"PK\x03\x04junk", "unreadable"),
    ],
)
def test_npz_that_is_not_an_archive(tmp_path, content, phrase):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=phrase):
        load_dataset(path)


# --- .csv ------------------------------------------------------------------------------------


def csv_text(n=40, header="a,label,b", label=lambda i: i % 3 + 1):
    rows = [f"{i * 0.5},{label(i)},{-i}" for i in range(n)]
    return header + "\n" + "\n".join(rows) + "\n"


def test_csv_label_column_anywhere(tmp_path):
    ds = load_dataset(save_csv(tmp_path / "d.csv", csv_text()), scale="none")
    assert ds.n_features == 2 and ds.classes == ("1", "2", "3")
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 40
    # features are columns a and b, in order: b == -2 * a
    np.testing.assert_allclose(ds.X_train[:, 1], -2 * ds.X_train[:, 0])
    assert "label column 'label'" in ds.source


def test_csv_custom_label_column_quotes_and_bom(tmp_path):
    text = '\ufeff"x1", "target" ,"x2"\n' + csv_text(header="").split("\n", 1)[1]
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    ds = load_dataset(path, label_column="target")
    assert ds.classes == ("1", "2", "3")


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("a,label,b\n", "a header but no data rows"),
        ("a,b,c\n1,2,3\n", "no column named 'label' in the header (a, b, c); pass label_column="),
        ("a,label,label\n1,2,3\n", "several columns named 'label'"),
        ("a,label,a\n1,2,3\n", "the header names several columns 'a'"),
        ("a,label,b\n1,2,3\n4,5,x\n", "could not convert string 'x'"),
        ("a,label,b\n1,2,3\n4, ,6\n", "labels: data row 2 has no label"),
        ("a,label,b\n1,2,3\n4,5,\n", "could not convert string ''"),
        ("a,label,b\n1,2,3\n4,5\n", "number of columns changed"),
        ("a,label,b\n1,2\n4,5\n", "the header has 3 columns, rows 2"),
        (
            csv_text().replace("1.0,", "nan,", 1),
            "NaN or infinite values in 1 rows (first: data row 3",
        ),
        (csv_text().replace("1.5,", "inf,", 1), "NaN or infinite"),
        (csv_text(label=lambda i: i % 3 + 0.25), "labels must be integers; 40 are not"),
        (csv_text(label=lambda i: 9), "only one class (label 9)"),
    ],
)
def test_bad_csv(tmp_path, text, phrase):
    path = save_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert phrase in str(err.value)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_too_few_rows_for_three_parts(tmp_path):
    path = save_csv(tmp_path / "tiny.csv", csv_text(n=3, label=lambda i: i % 2))
    with pytest.raises(DataError, match="too few samples"):
        load_dataset(path)


# --- names and arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phrase"),
    [("imagenet", "unknown dataset 'imagenet'"), ("data.txt", "unknown dataset"),
     ("missing.npz", "no such file")],
)  # fmt: skip
def test_unknown_names_and_paths(tmp_path, monkeypatch, name, phrase):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=phrase):
        load_dataset(name)


def test_relative_path_found_in_data_dir(tmp_path, monkeypatch):
    X, y = make_xy(n=40)
    save_npz(tmp_path / "mine.npz", X=X, y=y)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_dataset("mine.npz", data_dir=tmp_path).n_features == 5


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, float("nan"), "0.2", None])
def test_bad_val_fraction(fraction):
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_bad_scale():
    with pytest.raises(DataError, match="scale must be one of unit, standard, none; got 'minmax'"):
        load_dataset("digits", scale="minmax")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None, True])
def test_bad_seed(seed):
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        load_dataset("digits", seed=seed)


def test_large_user_files_are_prepared_and_memory_mapped(tmp_path, monkeypatch):
    X, y = make_xy(n=120)
    npz = save_npz(tmp_path / "big.npz", X=X, y=y)
    csv = save_csv(tmp_path / "big.csv", csv_text(n=120))
    in_memory = [load_dataset(npz), load_dataset(csv)]
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    for path, expected in zip((npz, csv), in_memory, strict=True):
        ds = load_dataset(path)
        assert isinstance(ds.X_train, np.memmap) and ds.name == "big"
        assert ds.classes == expected.classes
        for part in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            np.testing.assert_array_equal(getattr(ds, part), getattr(expected, part))
    with pytest.raises(DataError, match="no column named 'target'"):  # label_column is in the key
        load_dataset(csv, label_column="target")


def test_csv_word_labels_feature_names_and_the_fitted_scaling(tmp_path, monkeypatch):
    words = ("cat", "dog", "bird")
    text = "width,label,height\n" + "".join(f"{i * 2.0},{words[i % 3]},{-i}\n" for i in range(60))
    csv = save_csv(tmp_path / "animals.csv", text)
    ds = load_dataset(csv, scale="standard")
    assert ds.labels == ("bird", "cat", "dog") and ds.classes == ds.labels
    assert ds.feature_names == ("width", "height")
    # the scaling was fitted on the training part, and is what turned raw values into X
    raw = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=(0, 2))
    assert ds.scaling.kind == "standard"
    scaled = ds.scaling.apply(raw)
    train_rows = [np.flatnonzero((scaled == row).all(axis=1))[0] for row in ds.X_train]
    np.testing.assert_allclose(raw[train_rows].mean(axis=0), ds.scaling.offset)
    np.testing.assert_allclose(raw[train_rows].std(axis=0), ds.scaling.divisor)
    # words travel with their rows: the label of each training row is its word
    expected = [words[r % 3] for r in train_rows]
    assert [ds.labels[k] for k in ds.y_train] == expected
    # the prepared (memory-mapped) copy carries the same
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    big = load_dataset(csv, scale="standard")
    assert isinstance(big.X_train, np.memmap)
    assert big.labels == ds.labels and big.feature_names == ds.feature_names
    assert big.scaling.equals(ds.scaling)


def test_npz_text_labels_and_integer_labels_kept_as_numbers(tmp_path):
    X, y = make_xy(n=60)
    ds = load_dataset(save_npz(tmp_path / "n.npz", X=X, y=y))
    assert ds.labels == (-3, 7, 42) and all(type(v) is int for v in ds.labels)
    assert ds.feature_names is None
    names = np.array(["low", "mid", "high"])[np.searchsorted([-3, 7, 42], y)]
    ds = load_dataset(save_npz(tmp_path / "t.npz", X=X, y=names))
    assert ds.labels == ("high", "low", "mid")
