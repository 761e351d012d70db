"""Samplers in parallel: TPE never repeats a configuration across workers; QMC, random and grid
configurations do not depend on the number of workers."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from mlpsearch.config import parse_experiment
from mlpsearch.runner import run_study
from mlpsearch.samplers import qmc_configs


def experiment(name: str, sampler: str, n_trials: int, n_jobs: int):
    return parse_experiment(
        {
            "study": {
                "name": name,
                "sampler": sampler,
                "n_trials": n_trials,
                "n_jobs": n_jobs,
                "seed": 3,
            },
            "data": {"dataset": "digits"},
            "train": {"epochs": 1, "batch_size": 64},
            "space": {
                "hidden_layers": {"low": 1, "high": 2},
                "units": {"low": 8, "high": 32},
                "activation": ["relu", "tanh"],
                "learning_rate": {"low": 0.01, "high": 0.2, "log": True},
            },
        }
    )


def params(study: optuna.Study) -> list[tuple]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [tuple(sorted(t.params.items())) for t in sorted(trials, key=lambda t: t.number)]


@pytest.mark.slow
def test_tpe_with_two_workers_never_repeats_a_configuration(tmp_path):
    result = run_study(experiment("tpe2", "tpe", 40, 2), tmp_path, echo=lambda s: None)
    done = params(result.study)
    assert len(done) == 40
    assert len(set(done)) == 40


def test_qmc_configurations_do_not_depend_on_the_number_of_workers(tmp_path):
    one = run_study(experiment("q", "qmc", 6, 1), tmp_path / "one", echo=lambda s: None)
    two = run_study(experiment("q", "qmc", 6, 2), tmp_path / "two", echo=lambda s: None)
    assert sorted(params(one.study)) == sorted(params(two.study))
    assert len(set(params(one.study))) == 6


def test_qmc_slots_keep_their_configuration_when_a_study_grows():
    exp = experiment("q", "qmc", 5, 1)
    assert qmc_configs(exp, 9)[:5] == qmc_configs(exp, 5)
    assert len({tuple(sorted(c.items())) for c in qmc_configs(exp, 9)}) == 9
