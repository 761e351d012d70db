"""Model files that stand alone, and ``mlpsearch predict`` on raw data.

A model file carries the network, the scaling fitted on the training part, the feature names and
the data's own labels: predicting raw digits gives the test error ``rerun --final`` reported, and
a CSV whose labels are words gets words back.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mlpsearch.cli import main
from mlpsearch.engine import MLP, Model, Scaling, TrainConfig, train
from mlpsearch.engine.data import load_dataset, stratified_split
from mlpsearch.engine.data.datasets import TEST_FRACTION, TEST_SEED


def raw_digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The digits test part as the data holds it: uint8 pixel values 0..16, labels 0..9."""
    with resources.files("mlpsearch.engine.data").joinpath("digits.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            X, y = z["X"], z["y"].astype(np.int64)
    _, test = stratified_split(y, TEST_FRACTION, np.random.default_rng(TEST_SEED))
    return X[test], y[test]


def test_predicting_raw_digits_gives_the_test_error_rerun_final_reported(
    tiny_study, tmp_path, capsys
):
    folder = tiny_study
    assert main(["rerun", str(folder), "--final"]) == 0
    out = capsys.readouterr().out
    reported = float(out.split("TEST ERROR ")[1].split("%")[0]) / 100

    X, y = raw_digits_test()
    assert X.dtype == np.uint8 and X.max() == 16  # raw pixel values, not scaled
    model = Model.load(folder / "final_model.npz")
    error = float(np.mean(model.predict(X) != y))
    assert error == pytest.approx(reported, abs=5e-7)  # the report prints 4 decimals of a %
    assert model.labels == tuple(range(10)) and model.scaling.kind == "unit"

    # the command: the same accuracy, and a predictions file written
    data = tmp_path / "digits_test.npz"
    np.savez(data, X=X, y=y)
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(folder / "final_model.npz"), str(data), "--out", str(pred)]) == 0
    said = capsys.readouterr().out
    assert f"accuracy {1 - error:.2%} ({int(round((1 - error) * len(y)))}/{len(y)})" in said
    rows = list(csv.DictReader(pred.open()))
    assert len(rows) == len(y)
    assert [int(r["prediction"]) for r in rows] == model.predict(X).tolist()


def test_the_best_model_is_saved_with_its_preprocessing(tiny_study):
    folder = tiny_study
    assert main(["rerun", str(folder)]) == 0
    model = Model.load(folder / "best_model.npz")
    data = load_dataset("digits")
    assert model.scaling.equals(data.scaling)
    # raw values in, the same answers as the bare network on the scaled data
    X, _ = raw_digits_test()
    assert np.array_equal(model.predict(X), model.network.predict(data.X_test))
    # MLP.load still reads the network of a model file
    assert MLP.load(folder / "best_model.npz").layer_sizes == model.network.layer_sizes


def word_csv(path: Path, n: int = 150, seed: int = 0, header=("width", "label", "height")):
    """Three well separated clusters labelled with words; features on different scales."""
    rng = np.random.default_rng(seed)
    words = ["cat", "dog", "bird"]
    rows = []
    for i in range(n):
        k = i % 3
        rows.append((100.0 * k + rng.normal(0, 5), words[k], 0.01 * k + rng.normal(0, 0.001)))
    lines = [",".join(header)]
    for w, label, h in rows:
        values = {"width": f"{w:.4f}", "label": label, "height": f"{h:.6f}"}
        lines.append(",".join(values[c] for c in header))
    path.write_text("\n".join(lines) + "\n")
    return path, [r[1] for r in rows]


def fixed_experiment(path: Path, dataset: Path) -> Path:
    path.write_text(
        f"""[study]
name = "words"
seed = 3
[data]
dataset = "{dataset}"
[train]
epochs = 30
batch_size = 16
[space]
hidden_layers = 1
units = 16
activation = "tanh"
learning_rate = 0.1
"""
    )
    return path


def test_a_csv_with_word_labels_gets_words_back(tmp_path, capsys):
    data, _ = word_csv(tmp_path / "animals.csv")
    model_path = tmp_path / "model.npz"
    toml = fixed_experiment(tmp_path / "words.toml", data)
    assert main(["train", str(toml), "--save", str(model_path)]) == 0
    capsys.readouterr()
    model = Model.load(model_path)
    assert model.labels == ("bird", "cat", "dog")
    assert model.feature_names == ("width", "height")

    # new data, columns in another order and no label column: words come back
    new, truth = word_csv(tmp_path / "new.csv", n=30, seed=1, header=("height", "width", "label"))
    text = new.read_text().splitlines()
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("\n".join(",".join(line.split(",")[:2]) for line in text) + "\n")
    assert main(["predict", str(model_path), str(unlabelled)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "prediction" and out[1:] == truth

    # with labels: the accuracy, and --proba columns named by the words, summing to 1
    pred = tmp_path / "pred.csv"
    args = ["predict", str(model_path), str(new), "--proba", "--out", str(pred)]
    assert main(args) == 0
    assert "accuracy 100.00% (30/30)" in capsys.readouterr().out
    rows = list(csv.DictReader(pred.open()))
    assert list(rows[0]) == ["prediction", "proba_bird", "proba_cat", "proba_dog"]
    assert [r["prediction"] for r in rows] == truth
    for r in rows:
        assert sum(float(r[f"proba_{w}"]) for w in ("bird", "cat", "dog")) == pytest.approx(
            1, abs=1e-5
        )

    # and in Python, from a plain array in the training order
    X = np.array([[0.0, 0.0], [200.0, 0.02]])
    assert model.predict(X).tolist() == ["cat", "bird"]


def test_json_output_holds_the_predictions(tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    tiny_model().save(model_path)
    data = tmp_path / "x.npz"
    np.savez(data, X=np.eye(4, dtype=np.float32) * 3)
    assert main(["predict", str(model_path), str(data), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n"] == 4 and doc["accuracy"] is None and len(doc["predictions"]) == 4
    assert set(doc["predictions"]) <= {"no", "yes"}


def tiny_model(names=None) -> Model:
    net = MLP([4, 3, 2], "relu", seed=0)
    scaling = Scaling("unit", np.zeros(4), np.full(4, 3.0))
    return Model(net, scaling, ("no", "yes"), ("no", "yes"), names)


def test_model_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    model = tiny_model(("a", "b", "c", "d"))
    train(model.network, X, y, X, y, TrainConfig(epochs=3, learning_rate=0.1))
    path = tmp_path / "model.npz"
    model.save(path)
    again = Model.load(path)
    assert again.labels == model.labels and again.feature_names == ("a", "b", "c", "d")
    assert again.scaling.equals(model.scaling)
    assert np.array_equal(again.network.params, model.network.params)
    assert np.array_equal(again.predict_proba(X), model.predict_proba(X))
    assert again.predict(X).dtype.kind == "U"
    with np.load(path, allow_pickle=False) as f:  # no pickles inside
        assert str(f["format"]) == "mlpsearch-model-v1"


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"X": np.zeros((5, 3))}, "the model takes 4 features per sample; the data has 3"),
        ({"X": np.array([["a", "b", "c", "d"]])}, "features must be numbers; got dtype <U1"),
        ({"X": np.array([1.0, 2.0, np.nan, 4.0])[None, :]}, "NaN or infinite values in 1 rows"),
        ({"X": np.zeros(4)}, "features must have shape (samples, 4); got (4,)"),
        ({"y": np.zeros(3)}, "no array 'X' (found: y)"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(tmp_path, capsys, arrays, phrase):
    model_path = tmp_path / "m.npz"
    tiny_model().save(model_path)
    data = tmp_path / "bad.npz"
    np.savez(data, **arrays)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model_path), str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlpsearch: error: ") and len(err.splitlines()) == 1
    assert phrase in err
    assert not out.exists()  # nothing written


def test_feature_names_are_checked(tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    tiny_model(("a", "b", "c", "d")).save(model_path)
    data = tmp_path / "x.csv"
    data.write_text("a,b,c,e\n1,2,3,4\n")
    assert main(["predict", str(model_path), str(data)]) == 2
    err = capsys.readouterr().err
    assert "feature columns do not match the model's (missing d; unknown e)" in err


def test_an_old_weights_only_file_is_one_clear_line(tmp_path, capsys):
    old = tmp_path / "best_model.npz"
    MLP([4, 3, 2], seed=0).save(old)
    data = tmp_path / "x.npz"
    np.savez(data, X=np.zeros((2, 4)))
    assert main(["predict", str(old), str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "holds only a network's weights" in err[0] and "mlpsearch rerun" in err[0]
    with pytest.raises(ValueError, match="holds only a network's weights"):
        Model.load(old)


def test_idx_images_with_their_labels_file(tmp_path, capsys):
    import gzip
    import struct

    images = np.random.default_rng(0).integers(0, 4, size=(6, 2, 2), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1], dtype=np.uint8)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 6, 2, 2) + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, 6) + labels.tobytes())
    net = MLP([4, 3, 2], "relu", seed=0)
    model_path = tmp_path / "m.npz"
    Model(net, Scaling("unit", np.zeros(4), np.full(4, 3.0)), (0, 1), ("0", "1")).save(model_path)
    args = ["predict", str(model_path), str(tmp_path / "t10k-images-idx3-ubyte.gz"), "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n"] == 6 and doc["correct"] is not None
    expected = net.predict(images.reshape(6, 4) / 3.0)
    assert doc["predictions"] == expected.tolist()
    assert doc["correct"] == int(np.sum(expected == labels))
