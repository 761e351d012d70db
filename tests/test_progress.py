"""Progress: one line per newly finished trial, and a tqdm bar with the best error so far."""

from __future__ import annotations

import optuna
import pytest

from mlpsearch.progress import Progress


@pytest.fixture
def trials(tiny_study, load_study) -> list[optuna.trial.FrozenTrial]:
    """The trials of the tiny study, as stored."""
    return load_study(tiny_study).get_trials()


def test_lines_for_new_trials_and_a_bar_with_the_best(trials, tiny_experiment, capsys):
    n_trials = tiny_experiment.study.n_trials
    lines: list[str] = []
    progress = Progress(n_trials + 2, echo=lines.append, bar=True)
    progress.update(trials[:2])  # of an earlier run: counted, not printed
    assert lines == []
    progress.update(trials)
    progress.update(trials)  # nothing new: nothing printed twice
    assert [line.split()[:2] for line in lines] == [["trial", str(t.number)] for t in trials[2:]]
    best = min(t.value for t in trials if t.value is not None)
    assert progress.best == best
    assert progress.bar.n == n_trials and progress.bar.total == n_trials + 2
    progress.close()
    err = capsys.readouterr().err
    assert f"{n_trials}/{n_trials + 2}" in err and f"best val {best:.2%}" in err


def test_no_bar_where_none_is_wanted(trials, tiny_experiment, capsys):
    n_trials = tiny_experiment.study.n_trials
    lines: list[str] = []
    for bar in (False, None):  # None: stderr is not a terminal under pytest
        progress = Progress(n_trials, echo=lines.append, bar=bar)
        progress.update([])
        progress.update(trials)
        progress.close()
    assert len(lines) == 2 * n_trials
    assert capsys.readouterr().err == ""
