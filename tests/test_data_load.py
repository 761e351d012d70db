"""load_dataset: digits, splits, the MNIST-family search order, the prepared cache, real files."""

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlpsearch.engine.data import DataError, Dataset, download, load_dataset, stratified_split
from mlpsearch.engine.data import datasets as data

pytestmark = pytest.mark.usefixtures("isolated_data")  # private cache, offline, no system dirs

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def sizes(ds: Dataset) -> tuple[int, int, int]:
    return len(ds.y_train), len(ds.y_val), len(ds.y_test)


# --- digits ----------------------------------------------------------------------------------


def test_digits_loads_offline_fast():
    start = time.perf_counter()
    ds = load_dataset("digits")
    seconds = time.perf_counter() - start
    assert seconds < 1.0, f"digits took {seconds:.3f} s"
    assert sizes(ds) == (1150, 288, 359)
    assert (ds.n_features, ds.n_classes) == (64, 10)
    assert ds.classes == tuple("0123456789")
    for part in (ds.X_train, ds.X_val, ds.X_test):
        assert part.dtype == np.float32 and part.shape[1] == 64
        assert 0.0 <= part.min() and part.max() == 1.0  # 0..16 divided by 16
    for part in (ds.y_train, ds.y_val, ds.y_test):
        assert part.dtype == np.int64 and set(np.unique(part)) == set(range(10))
    assert "UCI" in ds.source and "scikit-learn" in ds.source


def test_digits_is_the_default_and_parts_are_read_only():
    ds = load_dataset()
    assert ds.name == "digits"
    with pytest.raises(ValueError, match="read-only"):
        ds.X_train[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    assert (
        repr(ds) == "Dataset('digits': 1150 train / 288 val / 359 test, 64 features, 10 classes)"
    )


def test_digits_validation_is_stratified_and_seeded():
    a, b, a2 = load_dataset(seed=0), load_dataset(seed=1), load_dataset(seed=0)
    np.testing.assert_array_equal(a.X_val, a2.X_val)
    assert not np.array_equal(a.y_val, b.y_val) or not np.array_equal(a.X_val, b.X_val)
    np.testing.assert_array_equal(a.X_test, b.X_test)  # unit scale is fixed: test part identical
    train_counts = np.bincount(a.y_train) + np.bincount(a.y_val)
    np.testing.assert_allclose(np.bincount(a.y_val), 0.2 * train_counts, atol=1)


def test_digits_val_fraction():
    ds = load_dataset("digits", val_fraction=0.5)
    assert sizes(ds) == (719, 719, 359)


# --- stratified_split --------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.9])
def test_stratified_split_properties(fraction):
    y = np.repeat(np.arange(5), [1, 2, 37, 200, 61])
    keep, hold = stratified_split(y, fraction, np.random.default_rng(0))
    assert np.intersect1d(keep, hold).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, hold])), np.arange(len(y)))
    assert len(hold) == round(fraction * len(y))
    counts = np.bincount(y)
    held = np.bincount(y[hold], minlength=5)
    assert np.all(np.abs(held - fraction * counts) <= 1.0 + 1e-9)
    assert np.all(np.bincount(y[keep], minlength=5) >= 1)  # every class stays trainable
    again, _ = stratified_split(y, fraction, np.random.default_rng(0))
    np.testing.assert_array_equal(keep, again)
    other, _ = stratified_split(y, fraction, np.random.default_rng(1))
    assert not np.array_equal(keep, other)


# --- MNIST-family folders ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_via_data_dir(tmp_path, gz, write_mnist_like):
    arrays = write_mnist_like(tmp_path / "files", gz=gz)
    ds = load_dataset("kmnist", data_dir=tmp_path / "files", scale="none")
    assert sizes(ds) == (80, 20, 30)
    assert ds.n_features == 16 and ds.classes[:2] == ("o", "ki")
    np.testing.assert_array_equal(ds.X_test, arrays["test-images"].reshape(30, 16))
    np.testing.assert_array_equal(ds.y_test, arrays["test-labels"])
    assert str(tmp_path / "files") in ds.source


def test_unit_scale_divides_by_255(tmp_path, write_mnist_like):
    arrays = write_mnist_like(tmp_path / "d")
    ds = load_dataset("mnist", data_dir=tmp_path / "d")
    np.testing.assert_allclose(ds.X_test * 255, arrays["test-images"].reshape(30, 16), rtol=1e-6)


def test_dotted_file_names(tmp_path, write_mnist_like):
    write_mnist_like(tmp_path / "d", gz=False)
    for stem in (name.removesuffix(".gz") for name in download.FILES):
        (tmp_path / "d" / stem).rename(tmp_path / "d" / stem.replace("-idx", ".idx"))
    assert sizes(load_dataset("mnist", data_dir=tmp_path / "d")) == (80, 20, 30)


def test_search_order(tmp_path, monkeypatch, write_mnist_like):
    """data_dir/<name>, data_dir, $MLPSEARCH_DATA/<name>, cache/<name>, system folders."""
    cache = Path(os.environ["MLPSEARCH_CACHE"])
    places = {
        "data_dir/name": tmp_path / "dd" / "mnist",
        "data_dir": tmp_path / "dd",
        "env": tmp_path / "env" / "mnist",
        "cache": cache / "mnist",
        "system": tmp_path / "sys",
    }
    for i, folder in enumerate(places.values()):
        write_mnist_like(folder, n_train=50 + 10 * i)
    monkeypatch.setenv("MLPSEARCH_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"mnist": [str(places["system"])]})

    def found(**kwargs):
        ds = load_dataset("mnist", **kwargs)
        return len(ds.y_train) + len(ds.y_val)

    assert found(data_dir=tmp_path / "dd") == 50
    for name in download.FILES:
        (places["data_dir/name"] / name).unlink()
    assert found(data_dir=tmp_path / "dd") == 60
    assert found(data_dir=tmp_path / "nothing-here") == 70
    assert found() == 70
    monkeypatch.delenv("MLPSEARCH_DATA")
    assert found() == 80
    for name in download.FILES:
        (places["cache"] / name).unlink()
    assert found() == 90


def test_data_env_root_itself_is_not_searched(tmp_path, monkeypatch, write_mnist_like):
    write_mnist_like(tmp_path / "root")
    monkeypatch.setenv("MLPSEARCH_DATA", str(tmp_path / "root"))
    with pytest.raises(DataError, match="IDX files not found"):
        load_dataset("fashion-mnist")


@pytest.mark.parametrize(
    ("skip", "phrase"),
    [
        (("train-images", "train-labels"), "training files missing"),
        (("train-labels",), "training files missing"),
        (("test-images",), "test files missing"),
    ],
)
def test_partial_folder_stops_the_search(tmp_path, monkeypatch, skip, phrase, write_mnist_like):
    write_mnist_like(tmp_path / "part", skip=skip)
    write_mnist_like(Path(os.environ["MLPSEARCH_CACHE"]) / "mnist")  # would be found next
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "part")
    assert phrase in str(err.value) and str(tmp_path / "part") in str(err.value)


def test_nothing_found_offline_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "empty") in message and os.environ["MLPSEARCH_CACHE"] in message
    assert "MLPSEARCH_OFFLINE" in message and "train-images-idx3-ubyte.gz" in message


def test_corrupt_file_in_folder_names_it(tmp_path, write_mnist_like):
    write_mnist_like(tmp_path / "d")
    bad = tmp_path / "d" / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-6])
    with pytest.raises(DataError, match=f"{bad}: truncated gzip"):
        load_dataset("mnist", data_dir=tmp_path / "d")


def test_label_out_of_range_in_folder(tmp_path, write_mnist_like, idx_bytes):
    write_mnist_like(tmp_path / "d", gz=False)
    labels = np.full(30, 11, np.uint8)
    (tmp_path / "d" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match="label 11 at index 0 is out of range 0..9"):
        load_dataset("mnist", data_dir=tmp_path / "d")


# --- the prepared cache ------------------------------------------------------------------------


def prepared_dirs(hidden=False):
    """Prepared folders (or, with hidden=True, temporary folders left behind)."""
    root = Path(os.environ["MLPSEARCH_CACHE"]) / "prepared"
    found = sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
    return [p for p in found if p.name.startswith(".") == hidden]


def test_large_data_is_prepared_once_and_memory_mapped(tmp_path, monkeypatch, write_mnist_like):
    write_mnist_like(tmp_path / "d")
    small = load_dataset("mnist", data_dir=tmp_path / "d", scale="standard")
    assert prepared_dirs() == []  # small data stays in memory
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    first = load_dataset("mnist", data_dir=tmp_path / "d", scale="standard")
    (folder,) = prepared_dirs()
    assert folder.name.startswith("mnist-")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{p}.npy" for p in data._PARTS] + ["meta.json"]
    )
    second = load_dataset("mnist", data_dir=tmp_path / "d", scale="standard")
    for ds in (first, second):
        assert isinstance(ds.X_train, np.memmap) and isinstance(ds.y_val, np.memmap)
        assert str(folder) in ds.source
        with pytest.raises(ValueError, match="read-only"):
            ds.X_train[0, 0] = 0
        for part in data._PARTS:
            np.testing.assert_array_equal(getattr(ds, part), getattr(small, part))
        assert ds.classes == small.classes and ds.n_features == 16
    load_dataset("mnist", data_dir=tmp_path / "d", scale="standard", seed=1)
    assert len(prepared_dirs()) == 2  # the key includes the seed


def test_changed_source_file_gets_a_new_prepared_folder(tmp_path, monkeypatch, write_mnist_like):
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    write_mnist_like(tmp_path / "d", seed=0)
    a = load_dataset("mnist", data_dir=tmp_path / "d")
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "d").iterdir()}
    write_mnist_like(tmp_path / "d", seed=1)  # same sizes, other content
    for p in (tmp_path / "d").iterdir():  # and a later mtime, whatever the clock's resolution
        os.utime(p, ns=(p.stat().st_atime_ns, mtimes[p.name] + 1_000_000_000))
    b = load_dataset("mnist", data_dir=tmp_path / "d")
    assert len(prepared_dirs()) == 2
    assert not np.array_equal(a.X_test, b.X_test)


def test_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch, write_mnist_like):
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("MLPSEARCH_CACHE", str(blocker))
    write_mnist_like(tmp_path / "d")
    ds = load_dataset("mnist", data_dir=tmp_path / "d")
    assert sizes(ds) == (80, 20, 30) and not isinstance(ds.X_train, np.memmap)


def test_concurrent_workers_build_one_complete_folder(tmp_path, write_mnist_like):
    write_mnist_like(tmp_path / "d", n_train=3000, n_test=500, side=8)
    code = (
        "import sys, numpy as np\n"
        "from mlpsearch.engine.data import datasets as data\n"
        "data.LARGE_BYTES = 0\n"
        f"ds = data.load_dataset('mnist', data_dir={str(tmp_path / 'd')!r})\n"
        "print(len(ds.y_train), len(ds.y_val), len(ds.y_test), float(ds.X_train.sum()))\n"
    )
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(out == outputs[0] for out in outputs)
    assert outputs[0][:3] == ["2400", "600", "500"]
    assert len(prepared_dirs()) == 1
    assert prepared_dirs(hidden=True) == []  # no leftover temporary folders


def test_crashed_build_leftovers_are_removed(tmp_path, monkeypatch, write_mnist_like):
    monkeypatch.setattr(data, "LARGE_BYTES", 0)
    write_mnist_like(tmp_path / "d")
    load_dataset("mnist", data_dir=tmp_path / "d")
    (folder,) = prepared_dirs()
    shutil.rmtree(folder)
    stale = folder.parent / f".{folder.name}.crashed"
    (stale / "X_train.npy").parent.mkdir()
    (stale / "X_train.npy").write_bytes(b"half")
    load_dataset("mnist", data_dir=tmp_path / "d")
    assert prepared_dirs() == [folder] and prepared_dirs(hidden=True) == []


# --- real files --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DEBIAN.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian(monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion-mnist": [str(FASHION_DEBIAN)]})
    ds = load_dataset("fashion-mnist")
    assert sizes(ds) == (48_000, 12_000, 10_000)
    assert (ds.n_features, ds.n_classes) == (784, 10)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert str(FASHION_DEBIAN) in ds.source
    np.testing.assert_array_equal(np.bincount(ds.y_val), [1200] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert float(ds.X_train.min()) == 0.0 and float(ds.X_train.max()) == 1.0
    assert isinstance(ds.X_train, np.memmap)


@pytest.mark.slow
def test_full_mnist_from_shared_folder(monkeypatch, root):
    if not (root.parent / "shared" / "data" / "mnist").is_dir():
        pytest.skip("../shared/data/mnist not present")
    monkeypatch.chdir(root)
    ds = load_dataset("mnist", data_dir="../shared/data/mnist")
    assert sizes(ds) == (48_000, 12_000, 10_000)
    assert (ds.n_features, ds.n_classes) == (784, 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [980, 1135, 1032, 1010, 982, 892,
                                                           958, 1028, 974, 1009])  # fmt: skip
    np.testing.assert_allclose(np.bincount(ds.y_val) / np.bincount(ds.y_train), 0.25, atol=0.002)


def test_t10k_only_folder_reports_training_files_missing(monkeypatch, root):
    if not (root.parent / "shared" / "data" / "mnist-t10k").is_dir():
        pytest.skip("../shared/data/mnist-t10k not present")
    monkeypatch.chdir(root)
    with pytest.raises(DataError, match="training files missing") as err:
        load_dataset("mnist", data_dir="../shared/data/mnist-t10k/")
    assert "train-images-idx3-ubyte" in str(err.value) and "\n" not in str(err.value)


def test_a_data_dir_that_is_a_file_is_refused_before_any_search(tmp_path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("mine\n")
    with pytest.raises(DataError, match=r"^data_dir .*notes\.txt: not a folder$"):
        load_dataset("mnist", data_dir=not_a_folder)
    assert not_a_folder.read_text() == "mine\n"  # untouched
