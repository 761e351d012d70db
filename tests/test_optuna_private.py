"""Optuna's private members that mlpsearch uses: still there, and still meaning the same.

Optuna offers no public way to read a trial's storage id, a study's id, a journal storage's
backend or the RDB heartbeat's stale trials, to read several given trials at once, nor to tell
a trial without reading it back, so the search layer uses ``_trial_id``, ``_study_id``,
``_backend``, ``_get_stale_trial_ids``, ``_get_trials`` and ``_tell._tell_with_warning``.
pyproject bounds Optuna to the versions tested here; on a new Optuna, these tests say which
member moved.

The first test reads the source of the search layer: any other ``obj._name`` of an object that
is not ours must be added to ``OPTUNA_PRIVATE`` below, with a check.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

STDLIB_PRIVATE = {
    "_SubParsersAction",  # argparse's type of add_subparsers(), for annotations
    "_exit",  # os._exit: an orphaned worker leaves at once (workers.py)
}


def check_trial_id(tmp_path: Path) -> None:
    """``FrozenTrial._trial_id``: the storage id of the trial (not its number)."""
    for storage in storages(tmp_path):
        study = optuna.create_study(storage=storage, study_name="s")
        study.enqueue_trial({})  # number 0 in both studies, different storage ids below
        other = optuna.create_study(storage=storage, study_name="other")
        trial_id = storage.create_new_trial(other._study_id)
        frozen = storage.get_trial(trial_id)
        assert frozen._trial_id == trial_id, type(storage).__name__
        assert other.get_trials(deepcopy=False)[0]._trial_id == trial_id


def check_study_id(tmp_path: Path) -> None:
    """``Study._study_id``: the id storages take for the study."""
    for storage in storages(tmp_path):
        study = optuna.create_study(storage=storage, study_name="s")
        assert study._study_id == storage.get_study_id_from_name("s")


def check_storage(tmp_path: Path) -> None:
    """``Study._storage``: the storage its trials read and write (set to a bare RDB storage
    by mlpsearch.queries.direct, in place of Optuna's cache)."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'direct.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    assert isinstance(study._storage, optuna.storages.BaseStorage)
    study._storage = storage
    study.enqueue_trial({"x": 1.0})
    trial_id = storage.get_all_trials(study._study_id)[0]._trial_id
    assert storage.set_trial_state_values(trial_id, TrialState.RUNNING)  # claimed by id
    trial = optuna.Trial(study, trial_id)
    assert trial.storage is storage
    trial.suggest_float("x", 0, 2)  # a trial never read through the cache takes parameters
    study.tell(trial, 1.0)
    assert storage.get_all_trials(study._study_id)[0].params == {"x": 1.0}


def check_backend(tmp_path: Path) -> None:
    """``JournalStorage._backend``: the journal backend it was built with."""
    backend = JournalFileBackend(str(tmp_path / "journal.log"))
    assert JournalStorage(backend)._backend is backend


def check_stale_trial_ids(tmp_path: Path) -> None:
    """``RDBStorage._get_stale_trial_ids(study_id)``: RUNNING trials whose last heartbeat is
    older than the grace period, by the database's clock."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'beat.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial_id = storage.create_new_trial(study._study_id)  # RUNNING
    quiet_id = storage.create_new_trial(study._study_id)  # RUNNING, never beat: not judged
    storage.record_heartbeat(trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(2.5)  # the subject: the heartbeat grows older than the grace period
    assert storage._get_stale_trial_ids(study._study_id) == [trial_id]
    assert storage.get_trial(quiet_id).state == TrialState.RUNNING


def check_tell(tmp_path: Path) -> None:
    """``optuna.study._tell._tell_with_warning(study, trial, value, state, skip_if_finished)``:
    what ``Study.tell`` does before reading the trial back (mlpsearch.workers)."""
    from optuna.study import _tell

    for storage in storages(tmp_path):
        study = optuna.create_study(storage=storage, study_name="s")
        trial = study.ask()
        _tell._tell_with_warning(study, trial, 0.5, None, skip_if_finished=True)
        assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 0.5
        _tell._tell_with_warning(study, trial, 0.7, None, skip_if_finished=True)  # skipped
        pruned = study.ask()
        _tell._tell_with_warning(study, pruned, None, TrialState.PRUNED, skip_if_finished=True)
        assert [t.value for t in study.trials] == [0.5, None]
        assert study.trials[1].state == TrialState.PRUNED


def check_get_trials(tmp_path: Path) -> None:
    """``RDBStorage._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)``:
    the trials in ``states`` among ``included_trial_ids`` (those not above the bound) and
    above the bound, by id (mlpsearch.queries.FinishedTrials)."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'get.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    ids = [storage.create_new_trial(study._study_id) for _ in range(5)]  # RUNNING
    for i in ids[:4]:
        storage.set_trial_state_values(i, TrialState.COMPLETE, [1.0])
    got = storage._get_trials(study._study_id, (TrialState.COMPLETE,), {ids[0], ids[2]}, ids[2])
    assert [t._trial_id for t in got] == [ids[0], ids[2], ids[3]]
    assert got[0].values == [1.0] and got[0].state == TrialState.COMPLETE


OPTUNA_PRIVATE: dict[str, Callable[[Path], None]] = {
    "_get_trials": check_get_trials,
    "_tell": check_tell,
    "_tell_with_warning": check_tell,
    "_trial_id": check_trial_id,
    "_study_id": check_study_id,
    "_backend": check_backend,
    "_storage": check_storage,
    "_get_stale_trial_ids": check_stale_trial_ids,
}


def storages(tmp_path: Path) -> list[optuna.storages.BaseStorage]:
    """A journal file and an RDB storage (SQLite), both fresh."""
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    return [journal, RDBStorage(f"sqlite:///{tmp_path / 'rdb.db'}")]


def private_uses(search: Path) -> dict[str, list[str]]:
    """``name -> ["file:line", ...]`` for every ``x._name`` in ``search`` (the folder search/)
    on an object not ours.

    Ours: ``self._x``/``cls._x``, and names that search/ itself defines (functions, classes,
    module globals, attributes it sets on ``self``).
    """
    ours: set[str] = set()
    uses: dict[str, list[str]] = {}
    trees = {path: ast.parse(path.read_text()) for path in sorted(search.rglob("*.py"))}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                ours.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    ours.add(node.attr)  # another object's attribute set here is not ours
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in ours or node.attr in STDLIB_PRIVATE:
                continue
            uses.setdefault(node.attr, []).append(
                f"{path.relative_to(search.parent)}:{node.lineno}"
            )
    return uses


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_every_private_member_used_is_checked_here(root):
    unchecked = {k: v for k, v in private_uses(root / "search").items() if k not in OPTUNA_PRIVATE}
    assert not unchecked, (
        "search/ uses private members of objects that are not ours, unchecked here: "
        + "; ".join(f"{k} at {', '.join(v)}" for k, v in sorted(unchecked.items()))
        + " (add each to OPTUNA_PRIVATE in tests/test_optuna_private.py with a check)"
    )


@pytest.mark.parametrize("member", sorted(OPTUNA_PRIVATE))
def test_optuna_private_member_still_works(member, tmp_path, root):
    where = (
        ", ".join(private_uses(root / "search").get(member, []))
        or "nowhere now (drop it from the table)"
    )
    try:
        OPTUNA_PRIVATE[member](tmp_path)
        return
    except (AttributeError, TypeError, AssertionError) as err:
        problem = f"{type(err).__name__}: {err}"
    pytest.fail(
        f"Optuna {optuna.__version__} changed the private member {member} that mlpsearch "
        f"uses at {where}: {problem}. Adapt those places (or bound Optuna in pyproject.toml "
        "to the versions tested).",
        pytrace=False,
    )
