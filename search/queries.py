"""Targeted reads of a study's trials: only the few that a step needs, never all of them.

Claiming a trial, judging liveness and showing progress happen once per trial (or several
times a second), so each must cost O(1) or O(running trials), not O(all trials): a study of
10,000 trials on PostgreSQL must not re-read 10,000 trials with their attributes per trial.

- RDB storages (PostgreSQL, SQLite): small SQL queries on Optuna's documented schema (the
  ``trials`` table: ``trial_id``, ``study_id``, ``state``), returning ids; whole trials are
  then read one by one through Optuna's storage API (``get_trial``). ``state`` holds the
  :class:`TrialState` names; ``tests/test_queries.py`` checks the schema this relies on.
  Optuna's own cached storage (``optuna.storages.get_storage``) does not help here: it
  re-reads every unfinished trial on each read, and a queue is made of unfinished trials.
- Other storages (the journal file): Optuna's ``get_all_trials(states=...)``, which filters
  the journal's in-memory replica (only new lines are read from the file).

Planning many trials is one transaction on PostgreSQL (:func:`enqueue`): Optuna's API would
take one transaction of about 30 statements per trial, and a count over the study's trials.
"""

from __future__ import annotations

import json
import random
import weakref
from collections import Counter
from collections.abc import Sequence

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.trials import FINISHED

UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)


def direct(study: optuna.Study, storage: BaseStorage) -> optuna.Study:
    """``study``, reading and writing ``storage`` itself rather than Optuna's cache in front of
    an RDB storage (what a worker needs: its trials' reads become filtered queries).

    The cache re-reads every unfinished trial on each read of the study, and it refuses the
    parameters of a trial it has not read (a trial claimed by id here), so a worker on it
    would have to read the whole queue once per trial.
    """
    if isinstance(storage, RDBStorage):
        study._storage = storage
    return study


def _names(states: tuple[TrialState, ...]) -> str:
    """``'COMPLETE','PRUNED'``: the states as SQL literals (TrialState names, not user input;
    a bound parameter would be a VARCHAR that PostgreSQL's enum column refuses to compare)."""
    return ",".join(f"'{s.name}'" for s in states)


def _ids(storage: RDBStorage, sql: str, **params: object) -> list[int]:
    import sqlalchemy

    with storage.engine.connect() as conn:
        return [row[0] for row in conn.execute(sqlalchemy.text(sql), params)]


# RDB: per storage and study, an id below which no trial is WAITING, now or later. A trial
# only leaves WAITING, and new trials get larger ids, so the oldest WAITING trial seen is such
# a floor forever; the query of the oldest WAITING trials then starts there (the primary key
# index) instead of going through every trial of the study.
_waiting_floor: weakref.WeakKeyDictionary[RDBStorage, dict[int, int]] = weakref.WeakKeyDictionary()


def waiting_ids(study: optuna.Study, storage: BaseStorage, limit: int) -> list[int]:
    """Ids of up to ``limit`` WAITING trials, oldest first."""
    if isinstance(storage, RDBStorage):
        floors = _waiting_floor.setdefault(storage, {})
        ids = _ids(
            storage,
            "SELECT trial_id FROM trials WHERE study_id = :study AND state = 'WAITING' "
            "AND trial_id >= :floor ORDER BY trial_id LIMIT :limit",
            study=study._study_id,
            floor=floors.get(study._study_id, 0),
            limit=limit,
        )
        if ids:
            floors[study._study_id] = ids[0]
        return ids
    trials = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    return [t._trial_id for t in trials[:limit]]


def claim_waiting(study: optuna.Study, storage: BaseStorage, spread: int = 16) -> int | None:
    """Atomically take a WAITING trial (WAITING -> RUNNING); its id, or None if none is left.

    Like ``Study.ask`` without its fallback of creating a fresh trial, so that a study never
    runs more trials than it enqueued, however many workers race for the last one. The
    transition is Optuna's ``set_trial_state_values``, atomic on every storage (RDB: a row
    lock); workers pick at random among the ``spread`` oldest waiting trials, so that many
    workers rarely race for the same one.
    """
    while True:
        candidates = waiting_ids(study, storage, spread)
        if not candidates:
            return None
        random.shuffle(candidates)
        for trial_id in candidates:
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except optuna.exceptions.UpdateFinishedTrialError:
                continue


def running(study: optuna.Study, storage: BaseStorage) -> list[FrozenTrial]:
    """The RUNNING trials, whole (a filtered query on RDB; O(running))."""
    return storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))


def any_running(study: optuna.Study, storage: BaseStorage) -> bool:
    """Whether a trial is RUNNING (RDB: one query returning at most one row)."""
    if isinstance(storage, RDBStorage):
        return bool(
            _ids(
                storage,
                "SELECT trial_id FROM trials WHERE study_id = :study AND state = 'RUNNING' "
                "LIMIT 1",
                study=study._study_id,
            )
        )
    return bool(running(study, storage))


def count_states(study: optuna.Study, storage: BaseStorage) -> Counter[TrialState]:
    """How many trials are in each state (one aggregate query on RDB)."""
    if isinstance(storage, RDBStorage):
        import sqlalchemy

        with storage.engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT state, count(*) FROM trials WHERE study_id = :study GROUP BY state"
                ),
                {"study": study._study_id},
            )
            return Counter({TrialState[str(state)]: n for state, n in rows})
    trials = storage.get_all_trials(study._study_id, deepcopy=False)
    return Counter(t.state for t in trials)


class FinishedTrials:
    """The trials that finished since the last call, each read once (for progress lines).

    RDB: the ids of finished trials above a *floor* (every trial at or below it is finished
    and was handed out), then the new ones in one read; the floor follows the oldest
    unfinished trial, so a call reads the ids of the trials finished since that one started.
    """

    def __init__(self, study: optuna.Study, storage: BaseStorage) -> None:
        self.study, self.storage = study, storage
        self.floor = -1
        self.seen: set[int] = set()

    def new(self) -> list[FrozenTrial]:
        study_id = self.study._study_id
        if not isinstance(self.storage, RDBStorage):
            trials = self.storage.get_all_trials(study_id, deepcopy=False, states=FINISHED)
            fresh = [t for t in trials if t._trial_id not in self.seen]
            self.seen.update(t._trial_id for t in fresh)
            return fresh
        # the oldest unfinished trial first: every trial below it is finished, hence listed
        # by the second query (finished is final); the other order could skip one
        oldest = _ids(
            self.storage,
            f"SELECT min(trial_id) FROM trials WHERE study_id = :study AND trial_id > :floor "
            f"AND state IN ({_names(UNFINISHED)})",
            study=study_id,
            floor=self.floor,
        )[0]
        ids = _ids(
            self.storage,
            f"SELECT trial_id FROM trials WHERE study_id = :study AND trial_id > :floor "
            f"AND state IN ({_names(FINISHED)}) ORDER BY trial_id",
            study=study_id,
            floor=self.floor,
        )
        new = {i for i in ids if i not in self.seen}
        fresh = []
        if new:  # in one read (get_trial would take six statements each): the new ones, and
            # any that finished since, above every id listed
            read = self.storage._get_trials(study_id, FINISHED, new, max(ids))
            fresh = [t for t in read if t._trial_id not in self.seen]
        self.seen.update(ids)
        self.seen.update(t._trial_id for t in fresh)
        top = max(ids, default=self.floor)
        floor = top if oldest is None else min(oldest - 1, top)
        if floor > self.floor:
            self.floor = floor
            self.seen = {i for i in self.seen if i > floor}
        return fresh


# --- planning many trials at once --------------------------------------------------------------

CHUNK = 500  # rows per INSERT statement


def enqueue(study: optuna.Study, storage: BaseStorage, trials: Sequence[FrozenTrial]) -> None:
    """Add WAITING trials (each with its params, distributions, user and system attributes),
    numbered in order after the study's trials.

    PostgreSQL: one transaction of a few statements on Optuna's documented schema (``trials``,
    ``trial_params``, ``trial_user_attributes``, ``trial_system_attributes``), holding the
    study's row lock while it numbers them, as Optuna's own ``create_new_trial`` does. Other
    storages: ``study.add_trial`` for each.
    """
    if not trials:
        return
    if not (isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql"):
        for t in trials:
            study.add_trial(t)
        return
    import sqlalchemy
    from optuna.distributions import distribution_to_json

    study_id = study._study_id
    with storage.engine.begin() as conn:
        run = conn.execute
        run(
            sqlalchemy.text("SELECT study_id FROM studies WHERE study_id = :s FOR UPDATE"),
            {"s": study_id},
        )
        base = run(
            sqlalchemy.text("SELECT count(*) FROM trials WHERE study_id = :s"), {"s": study_id}
        ).scalar_one()
        _insert(
            conn,
            "trials (number, study_id, state, datetime_start, datetime_complete)",
            "(:number{i}, :study{i}, 'WAITING', NULL, NULL)",
            [{"number": base + i, "study": study_id} for i in range(len(trials))],
        )
        ids = dict(
            run(
                sqlalchemy.text(
                    "SELECT number, trial_id FROM trials WHERE study_id = :s AND number >= :base"
                ),
                {"s": study_id, "base": base},
            ).all()
        )
        params, user, system = [], [], []
        for i, t in enumerate(trials):
            trial_id = ids[base + i]
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append(
                    {
                        "trial": trial_id,
                        "name": name,
                        "value": dist.to_internal_repr(value),
                        "dist": distribution_to_json(dist),
                    }
                )
            user += [{"trial": trial_id, "key": k, "json": json.dumps(v)} for k, v in
                     t.user_attrs.items()]  # fmt: skip
            system += [{"trial": trial_id, "key": k, "json": json.dumps(v)} for k, v in
                       t.system_attrs.items()]  # fmt: skip
        _insert(
            conn,
            "trial_params (trial_id, param_name, param_value, distribution_json)",
            "(:trial{i}, :name{i}, :value{i}, :dist{i})",
            params,
        )
        for table, rows in (("trial_user_attributes", user), ("trial_system_attributes", system)):
            _insert(conn, f"{table} (trial_id, key, value_json)", "(:trial{i}, :key{i}, :json{i})",
                    rows)  # fmt: skip


def _insert(conn, into: str, row: str, rows: list[dict[str, object]]) -> None:
    """``INSERT INTO <into> VALUES <row>, <row>...`` of ``rows``, :data:`CHUNK` at a time
    (``row`` names its parameters ``:name{i}``)."""
    import sqlalchemy

    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        values = ", ".join(row.format(i=i) for i in range(len(chunk)))
        bound = {f"{k}{i}": v for i, r in enumerate(chunk) for k, v in r.items()}
        conn.execute(sqlalchemy.text(f"INSERT INTO {into} VALUES {values}"), bound)
