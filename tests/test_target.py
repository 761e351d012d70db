"""The study remembers its target: a ``--n-trials`` given once is stored with the study."""

from __future__ import annotations

from pathlib import Path

import optuna

from mlpsearch.cli import main
from mlpsearch.storage import open_storage

EXPERIMENT = """[study]
name = "target"
n_trials = 8
n_jobs = 1
seed = 2
confirm = { top = 0 }
[train]
epochs = 2
[space]
units = { low = 8, high = 32 }
"""


def n_trials(folder: Path) -> int:
    storage = open_storage(f"journal:{folder / 'journal.log'}")
    return len(optuna.load_study(study_name="target", storage=storage).trials)


def test_a_plain_run_resumes_to_the_stored_target_and_says_so(tmp_path, capsys):
    toml = tmp_path / "target.toml"
    toml.write_text(EXPERIMENT)
    out = tmp_path / "results"
    run = ["run", str(toml), "--out", str(out)]
    assert main([*run, "--n-trials", "3"]) == 0
    assert n_trials(out / "target") == 3
    capsys.readouterr()

    assert main(run) == 0  # the file says 8; the study's target is 3
    said = capsys.readouterr().out
    assert "resuming to its target of 3 trials, set by an earlier --n-trials" in said
    assert "(the experiment says 8" in said
    assert n_trials(out / "target") == 3

    assert main([*run, "--n-trials", "5"]) == 0  # a larger --n-trials still extends it
    assert n_trials(out / "target") == 5
    capsys.readouterr()
    assert main(run) == 0
    assert "target of 5 trials" in capsys.readouterr().out
    assert n_trials(out / "target") == 5
    assert "n_trials = 5" in (out / "target" / "experiment.toml").read_text()


def test_the_python_api_stores_the_target_too(tmp_path):
    import tomllib

    import mlpsearch

    spec = tomllib.loads(EXPERIMENT)
    study = mlpsearch.run(spec, n_trials=2, out=tmp_path, quiet=True)
    assert len(study.trials) == 2
    study = mlpsearch.run(spec, out=tmp_path, quiet=True)
    assert len(study.trials) == 2
    # without a target stored, the experiment's own size rules
    spec["study"]["name"] = "plain"
    assert len(mlpsearch.run(spec, out=tmp_path, quiet=True).trials) == 8
