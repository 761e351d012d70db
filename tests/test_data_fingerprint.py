"""A study only ever sees the data it started on: its fingerprint (shapes, classes, a content
hash of the scaled parts) is stored when it is created, and resuming, joining or re-running it
on changed data is refused with one line naming the change, leaving the study as it was."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mlpsearch.config import dumps_toml
from mlpsearch.engine.data import load_dataset

pytestmark = pytest.mark.slow  # a study run in a subprocess for each test

EXPERIMENT = dumps_toml(
    {
        "study": {"name": "fp", "n_trials": 2, "n_jobs": 1, "seed": 3},
        "data": {"dataset": "d.npz"},
        "train": {"epochs": 2, "batch_size": 16},
        "space": {"units": {"low": 4, "high": 8}},
    }
)


def npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=X, y=y)
    return buf.getvalue()


rng = np.random.default_rng(1)
X = rng.normal(size=(80, 5))
y = np.arange(80) % 3
X_one_value = X.copy()
X_one_value[3, 2] += 0.5  # inside the feature's range: the scaled data differs in one value


@pytest.fixture()
def study(tmp_path, cli):
    (tmp_path / "e.toml").write_text(EXPERIMENT)
    (tmp_path / "d.npz").write_bytes(npz(X, y))
    r = cli("run", "e.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path


CHANGES = {
    "more-features": (npz(rng.normal(size=(80, 6)), y), ["X_train", "x6", "was", "x5"]),
    "more-rows": (npz(rng.normal(size=(100, 5)), np.arange(100) % 3), ["X_train", "was"]),
    "more-classes": (npz(X, np.arange(80) % 4), ["4 classes, was 3"]),
    "same-shapes": (npz(X_one_value, y), ["same shapes, other values", "content hash"]),
}
MATRIX = [("run", c) for c in CHANGES] + [("rerun", "more-features"), ("rerun", "same-shapes"),
                                          ("worker", "more-classes")]  # fmt: skip


@pytest.mark.parametrize("command, change", MATRIX, ids=[f"{a}-{b}" for a, b in MATRIX])
def test_changed_data_is_refused_and_the_study_kept(study, change, command, cli):
    journal = study / "results" / "fp" / "journal.log"
    before = journal.read_bytes()
    content, words = CHANGES[change]
    (study / "d.npz").write_bytes(content)
    args = {
        "run": ["run", "e.toml", "--n-trials", "4"],
        "rerun": ["rerun", "results/fp"],
        "worker": ["worker", "--storage", f"journal:{journal}", "--study", "fp"],
    }[command]
    r = cli(*args, cwd=study)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "study 'fp' was started on other data" in lines[0]
    for word in words:
        assert word in lines[0]
    assert journal.read_bytes() == before


def test_the_same_data_again_resumes(study, cli):
    (study / "d.npz").write_bytes(npz(rng.normal(size=(80, 6)), y))
    assert cli("run", "e.toml", "--n-trials", "3", cwd=study).returncode == 2
    (study / "d.npz").write_bytes(npz(X, y))  # restored: the same content, a new file
    r = cli("run", "e.toml", "--n-trials", "3", cwd=study)
    assert r.returncode == 0, r.stderr
    assert "3 trials" in r.stdout


def test_fingerprint_is_the_content_not_the_file(tmp_path):
    a = load_dataset("digits").fingerprint()
    assert a == load_dataset("digits").fingerprint()
    assert a["shapes"]["X_train"] == [1150, 64]
    assert len(a["classes"]) == 10
    assert a != load_dataset("digits", seed=1).fingerprint()  # another validation split
    assert a != load_dataset("digits", scale="standard").fingerprint()
