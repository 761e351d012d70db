"""Progress: one line per newly finished trial, and a tqdm bar with the best error so far."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from mlpsearch.progress import Progress


def finished(study: optuna.Study, value: float, state=TrialState.COMPLETE) -> None:
    attrs = {"best_val_error": value, "best_train_error": value / 2, "epochs": 3, "seconds": 0.1}
    study.add_trial(
        create_trial(value=value if state == TrialState.COMPLETE else None, state=state,
                     user_attrs=attrs if state == TrialState.COMPLETE else {})  # fmt: skip
    )


def test_lines_for_new_trials_and_a_bar_with_the_best(capsys):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    finished(study, 0.05)  # of an earlier run: counted, not printed
    lines: list[str] = []
    progress = Progress(5, echo=lines.append, bar=True)
    progress.update(study.get_trials())
    assert lines == []
    finished(study, 0.01)
    finished(study, 0.5, TrialState.PRUNED)
    progress.update(study.get_trials())
    progress.update(study.get_trials())  # nothing new: nothing printed twice
    assert [line.split()[:3] for line in lines] == [
        ["trial", "1", "complete"],
        ["trial", "2", "pruned"],
    ]
    assert progress.best == 0.01
    bar = progress.bar
    assert bar.n == 3 and bar.total == 5
    progress.close()
    err = capsys.readouterr().err
    assert "3/5" in err and "best val 1.00%" in err and "trial" in err


def test_no_bar_where_none_is_wanted(capsys):
    study = optuna.create_study()
    finished(study, 0.1)
    lines: list[str] = []
    for bar in (False, None):  # None: stderr is not a terminal under pytest
        progress = Progress(2, echo=lines.append, bar=bar)
        progress.update([])
        progress.update(study.get_trials())
        progress.close()
    assert len(lines) == 2
    assert capsys.readouterr().err == ""
