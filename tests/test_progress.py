"""Progress: one line per newly finished trial, and a tqdm bar with the best error so far."""

from __future__ import annotations

import optuna
from study_fixture import N_TRIALS, NAME, study_copy

from mlpsearch.progress import Progress
from mlpsearch.storage import open_storage


def stored_trials(tmp_path_factory, tmp_path) -> list[optuna.trial.FrozenTrial]:
    folder = study_copy(tmp_path_factory, tmp_path)
    storage = open_storage(f"journal:{folder / 'journal.log'}")
    return optuna.load_study(study_name=NAME, storage=storage).get_trials()


def test_lines_for_new_trials_and_a_bar_with_the_best(tmp_path_factory, tmp_path, capsys):
    trials = stored_trials(tmp_path_factory, tmp_path)
    lines: list[str] = []
    progress = Progress(N_TRIALS + 2, echo=lines.append, bar=True)
    progress.update(trials[:2])  # of an earlier run: counted, not printed
    assert lines == []
    progress.update(trials)
    progress.update(trials)  # nothing new: nothing printed twice
    assert [line.split()[:2] for line in lines] == [
        ["trial", str(t.number)] for t in trials[2:]
    ]
    best = min(t.value for t in trials if t.value is not None)
    assert progress.best == best
    assert progress.bar.n == N_TRIALS and progress.bar.total == N_TRIALS + 2
    progress.close()
    err = capsys.readouterr().err
    assert f"{N_TRIALS}/{N_TRIALS + 2}" in err and f"best val {best:.2%}" in err


def test_no_bar_where_none_is_wanted(tmp_path_factory, tmp_path, capsys):
    trials = stored_trials(tmp_path_factory, tmp_path)
    lines: list[str] = []
    for bar in (False, None):  # None: stderr is not a terminal under pytest
        progress = Progress(N_TRIALS, echo=lines.append, bar=bar)
        progress.update([])
        progress.update(trials)
        progress.close()
    assert len(lines) == 2 * N_TRIALS
    assert capsys.readouterr().err == ""
