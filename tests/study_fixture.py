"""A small finished study for the result tests: made once per session, copied per test.

Not a conftest: the result tests call :func:`study_copy` from their own fixtures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlpsearch.config import parse_experiment
from mlpsearch.runner import run_study

NAME = "tiny"
N_TRIALS = 6
_made: dict[str, Path] = {}


def make_study(results: Path) -> Path:
    """Run a 6-trial random search on digits (a few seconds); its results folder."""
    exp = parse_experiment(
        {
            "study": {
                "name": NAME,
                "n_trials": N_TRIALS,
                "n_jobs": 1,
                "seed": 11,
                "confirm": {"top": 0},
            },
            "data": {"dataset": "digits"},
            "train": {"epochs": 10, "patience": 4, "batch_size": 32, "schedule": "cosine"},
            "space": {
                "hidden_layers": {"low": 1, "high": 2},
                "units": {"low": 8, "high": 64, "log": True},
                "activation": ["relu", "tanh", "gelu"],
                "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
                "init_scale": {"low": 0.5, "high": 2.0},
            },
        }
    )
    run_study(exp, results, echo=lambda line: None)
    return results / NAME


def study_copy(tmp_path_factory: pytest.TempPathFactory, dest: Path) -> Path:
    """A private copy of the session's study folder under ``dest`` (``dest/results/tiny``)."""
    if "folder" not in _made:
        _made["folder"] = make_study(tmp_path_factory.mktemp("study") / "results")
    folder = dest / "results" / NAME
    shutil.copytree(_made["folder"], folder, ignore=shutil.ignore_patterns("*.flock"))
    return folder
