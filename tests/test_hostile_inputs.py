"""Hostile inputs that must work (not only be refused): finite features near the float64 limit,
a damaged data cache, comparing a hundred trials, re-running a study known only by its storage;
and termination signals, handled as Ctrl-C is."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from optuna.trial import TrialState

from mlpsearch.config import dumps_toml
from mlpsearch.engine.data import DataError, load_dataset

# --- data ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["unit", "standard"])
def test_features_near_the_float64_limit_are_one_clear_error(tmp_path, scale):
    """Finite features whose differences and squares overflow are refused by name (they would
    otherwise turn into NaN through scaling); ordinary large values still scale."""
    rng = np.random.default_rng(0)
    X = np.clip(rng.normal(size=(120, 3)) / 4, -1, 1)
    X[:, 0] *= 1.7e308
    y = np.arange(120) % 2
    with pytest.raises(DataError, match=r"feature 1 reaches .*2\*\*500"):
        load_dataset(_npz(tmp_path / "d.npz", X, y), scale=scale)
    X[:, 0] /= 1.7e208  # about 1e100: large, but scaling stays finite
    ds = load_dataset(_npz(tmp_path / "ok.npz", X, y), scale=scale)
    for part in (ds.X_train, ds.X_val, ds.X_test):
        assert np.isfinite(part).all()


def _npz(path, X, y):
    np.savez(path, X=X, y=y)
    return path


def test_a_damaged_cache_is_built_again(tmp_path, monkeypatch):
    """A prepared dataset's meta.json holding {} (or any damage) is ours: rebuilt, not fatal."""
    monkeypatch.setenv("MLPSEARCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, size=(700_000, 4)).astype(np.float32)  # over LARGE_BYTES
    np.savez(tmp_path / "big.npz", X=X, y=np.arange(700_000) % 3)
    first = load_dataset(tmp_path / "big.npz")
    (meta,) = (tmp_path / "cache" / "prepared").glob("*/meta.json")
    assert "memory-mapped" in first.source
    for damage in ("{}", "[]", '{"name": "x", "classes": "ab", "source": "s"}', "not json"):
        meta.write_text(damage)
        again = load_dataset(tmp_path / "big.npz")
        assert again.fingerprint() == first.fingerprint()
        assert json.loads(meta.read_text())["name"] == "big"


# --- result commands -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hundred(tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("hundred")
    (folder / "h.toml").write_text(
        dumps_toml(
            {
                "study": {"name": "h", "n_trials": 100, "n_jobs": 2, "seed": 1},
                "data": {"dataset": "digits"},
                "train": {"epochs": 1, "batch_size": 128},
                "space": {"units": {"low": 4, "high": 16}},
            }
        )
    )
    r = cli("run", "h.toml", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder


@pytest.mark.slow
def test_compare_a_hundred_trials(hundred, cli):
    r = cli("compare", "results/h", *map(str, range(100)), cwd=hundred)
    assert r.returncode == 0, r.stderr
    (figure,) = (hundred / "results" / "h" / "plots").glob("compare_*.png")
    assert figure.name.startswith("compare_100_trials_0-99_")
    assert len(figure.name) < 60


@pytest.mark.slow
def test_rerun_by_storage_makes_its_results_folder(hundred, cli):
    journal = hundred / "results" / "h" / "journal.log"
    r = cli("rerun", "--storage", f"journal:{journal}", "--study", "h", "--out", "elsewhere",
            cwd=hundred)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (hundred / "elsewhere" / "h" / "best.toml").is_file()
    assert (hundred / "elsewhere" / "h" / "best_model.npz").is_file()


def test_train_saves_into_an_existing_model_file_only(tmp_path, cli):
    (tmp_path / "f.toml").write_text(
        dumps_toml(
            {
                "study": {"name": "f", "seed": 1},
                "data": {"dataset": "digits"},
                "train": {"epochs": 1},
                "space": {"units": 8},
            }
        )
    )
    r = cli("train", "f.toml", "--save", "m.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "m.npz").read_bytes()
    r = cli("train", "f.toml", "--save", "m.npz", "--seed", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # a model of ours is replaced
    assert (tmp_path / "m.npz").read_bytes() != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.npz")]  # no temp left


# --- termination signals ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c(
    tmp_path, sig, slow_experiment, cli, wait_until, running_worker, load_study
):
    path = slow_experiment(tmp_path, "sig", n_trials=8)
    results = tmp_path / "r"
    proc = cli.start("run", str(path), "--out", str(results), cwd=tmp_path)

    def finished():
        if not running_worker(results, "sig"):
            return None
        return load_study(results / "sig").get_trials(states=(TrialState.COMPLETE,))

    done_before = wait_until(finished, 600, what="a finished trial while another runs")
    proc.send_signal(sig)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 15
    assert "resume with: mlpsearch run" in err
    assert "Traceback" not in err
    study = load_study(results / "sig")
    kept = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert {t.number for t in done_before} <= kept
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert (results / "sig" / "trials.csv").is_file()


@pytest.mark.slow
def test_workers_stop_when_their_parent_is_killed(
    tmp_path, slow_experiment, cli, wait_until, running_worker, load_study, children_of
):
    """SIGKILL of the parent alone: its workers notice within seconds and claim nothing more."""
    path = slow_experiment(tmp_path, "orphan", n_trials=40)
    results = tmp_path / "r"
    proc = cli.start("run", str(path), "--out", str(results), cwd=tmp_path)
    wait_until(lambda: running_worker(results, "orphan"), what="a worker running a trial")
    children = children_of(proc.pid)
    assert children
    proc.kill()
    proc.wait(timeout=30)
    # workers that outlive their parent fail the test here
    wait_until(lambda: not any(_alive(pid) for pid in children), 30, what="the workers to end")
    study = load_study(results / "orphan")
    assert len(study.get_trials(states=(TrialState.WAITING,))) > 20  # not run unseen


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
