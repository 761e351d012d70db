"""One contract for every sampler and one for every pruner an experiment may name: a new entry in
the tables of ``mlpsearch.config`` is tested here without a second edit (as Optuna runs one
sampler test class over every sampler)."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from mlpsearch.config import PRUNERS, SAMPLERS
from mlpsearch.runner import run_study
from mlpsearch.trials import attrs

# Choice lists only: every sampler takes them, the grid sampler nothing else.
SPACE = {
    "hidden_layers": [1, 2],
    "units": [8, 16],
    "activation": ["relu", "tanh"],
    "learning_rate": [0.2, 1e-6],  # a good rate and a hopeless one, for the pruners
}


def by_slot(study) -> dict[int, tuple]:
    """slot -> (params, seed, value) of every trial."""
    return {
        t.user_attrs["slot"]: (sorted(t.params.items()), t.user_attrs["seed"], t.value)
        for t in study.get_trials()
    }


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_contract(sampler, tmp_path, make_experiment):
    """Every sampler: each slot runs once and completes, with parameters from the space that
    are the ones its network was built with; the same seed gives the same trials."""
    exp = make_experiment(f"s-{sampler}", sampler=sampler, n_trials=4, n_jobs=1, epochs=2, **SPACE)
    first = run_study(exp, tmp_path / "first", echo=lambda line: None).study
    trials = first.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        layers = t.params["hidden_layers"]
        units = [t.params[f"units_{i}"] for i in range(1, layers + 1)]
        assert layers in SPACE["hidden_layers"] and set(units) <= set(SPACE["units"])
        assert t.params["activation"] in SPACE["activation"]
        assert t.params["learning_rate"] in SPACE["learning_rate"]
        assert attrs(t)["config"]["model"]["layer_sizes"][1:-1] == units
    again = run_study(exp, tmp_path / "again", echo=lambda line: None).study
    assert by_slot(again) == by_slot(first)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_pruner_contract(pruner, tmp_path, make_experiment):
    """Every pruner: a trial reports every epoch it ran and ends COMPLETE or PRUNED; a pruned
    trial keeps its curves up to the epoch it was stopped at, and says so."""
    epochs = 6
    exp = make_experiment(
        f"p-{pruner}", pruner=pruner, n_trials=10, n_jobs=1, epochs=epochs, **SPACE
    )
    study = run_study(exp, tmp_path, echo=lambda line: None).study
    trials = study.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(10))
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), t.state
        curve = attrs(t)["curve_val_error"]
        assert t.intermediate_values == {e: v for e, v in enumerate(curve, start=1)}
        if t.state == TrialState.COMPLETE:
            assert len(curve) == epochs and t.value == min(curve)
        else:  # stopped at any epoch, the last one included
            assert 1 <= len(curve) <= epochs
            assert attrs(t)["prune_reason"].startswith(f"pruned at epoch {len(curve)}:")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if pruner == "none":
        assert not pruned
