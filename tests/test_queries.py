"""Targeted reads of a study's trials (mlpsearch.queries) on real storages: the journal file,
SQLite and PostgreSQL. Each returns what the full read would, and the per-trial ones read a
number of rows that does not grow with the study."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from mlpsearch import queries
from mlpsearch.storage import open_storage

KINDS = ["journal", "sqlite", "postgres"]


@pytest.fixture(params=KINDS)
def url(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'journal.log'}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    server = request.getfixturevalue("postgres")
    return server.url(server.create_database())


def new_study(url: str, n_waiting: int) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    storage = open_storage(url)
    study = optuna.create_study(study_name="q", storage=storage)
    for slot in range(n_waiting):
        study.enqueue_trial({"x": slot}, user_attrs={"slot": slot})
    return study, storage


def finish(storage, trial_id: int, state: TrialState = TrialState.COMPLETE) -> None:
    storage.set_trial_state_values(
        trial_id, state=state, values=[1.0] if state == TrialState.COMPLETE else None
    )


def test_the_schema_the_queries_rely_on(tmp_path):
    """Optuna's ``trials`` table: trial_id, study_id, state holding TrialState names."""
    storage = RDBStorage(f"sqlite:///{tmp_path / 'schema.db'}")
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({})
    columns = {c["name"] for c in sqlalchemy.inspect(storage.engine).get_columns("trials")}
    assert {"trial_id", "study_id", "state"} <= columns
    with storage.engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT trial_id, study_id, state FROM trials"))
        assert [tuple(r) for r in rows] == [(1, study._study_id, "WAITING")]


def test_queries_agree_with_a_full_read(url):
    study, storage = new_study(url, 8)
    ids = [t._trial_id for t in study.get_trials()]
    assert queries.waiting_ids(study, storage, 3) == ids[:3]
    claimed = [queries.claim_waiting(study, storage) for _ in range(5)]
    assert len(set(claimed)) == 5 and set(claimed) <= set(ids)
    finish(storage, claimed[0])
    finish(storage, claimed[1], TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    assert queries.count_states(study, storage) == Counter(t.state for t in trials)
    assert {t._trial_id for t in queries.running(study, storage)} == set(claimed[2:])
    assert queries.waiting_ids(study, storage, 100) == [
        t._trial_id for t in trials if t.state == TrialState.WAITING
    ]


def test_racing_workers_claim_each_waiting_trial_once(url):
    if url.startswith("sqlite"):
        pytest.skip("SQLite has no row locks: Optuna's WAITING -> RUNNING is not atomic there")
    study, storage = new_study(url, 60)
    claimed: list[list[int]] = [[] for _ in range(6)]

    def work(mine: list[int]) -> None:
        storage = open_storage(url)  # each worker its own storage and connection
        study = optuna.load_study(study_name="q", storage=storage)
        while (trial_id := queries.claim_waiting(study, storage, spread=4)) is not None:
            mine.append(trial_id)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    every = [i for mine in claimed for i in mine]
    assert sorted(every) == sorted(t._trial_id for t in study.get_trials())
    assert len(every) == len(set(every)) == 60
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())


def test_finished_trials_are_handed_out_once_each(url):
    study, storage = new_study(url, 6)
    watch = queries.FinishedTrials(study, storage)
    assert watch.new() == []
    a, b, c, d = (queries.claim_waiting(study, storage, spread=1) for _ in range(4))
    finish(storage, b)  # out of order: a (older) is still running
    finish(storage, c, TrialState.PRUNED)
    assert sorted(t._trial_id for t in watch.new()) == [b, c]
    assert watch.new() == []
    finish(storage, a, TrialState.FAIL)  # below what was seen: still handed out
    assert [t._trial_id for t in watch.new()] == [a]
    finish(storage, d)
    (trial,) = watch.new()
    assert trial._trial_id == d and trial.state == TrialState.COMPLETE
    assert trial.user_attrs["slot"] == 3  # whole trials, attributes included
    retry = storage.create_new_trial(study._study_id)  # a re-queued trial, newest id
    finish(storage, retry)
    for _ in range(2):
        e = queries.claim_waiting(study, storage, spread=1)
        finish(storage, e)
    assert len(watch.new()) == 3
    assert watch.new() == []
    done = [t for t in study.get_trials() if t.state in queries.FINISHED]
    assert len(done) == 7


def rows_read(storage: RDBStorage):
    """A counter of the rows the storage's queries return (a SQLAlchemy event)."""
    seen = Counter()

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and cursor.description:
            seen["rows"] += max(cursor.rowcount, 0)
            seen["queries"] += 1

    sqlalchemy.event.listen(storage.engine, "after_cursor_execute", count)
    return seen


@pytest.mark.slow
def test_per_trial_reads_do_not_grow_with_the_study(postgres):
    """A claim, and the progress read after one more trial finished, return as many rows
    with 20 trials in the study as with 200 (PostgreSQL's driver counts the rows)."""

    def costs(n: int) -> tuple[int, int]:
        study, storage = new_study(postgres.url(postgres.create_database()), n)
        watch = queries.FinishedTrials(study, storage)
        for _ in range(n - 2):
            finish(storage, queries.claim_waiting(study, storage, spread=1))
        watch.new()
        seen = rows_read(storage)
        trial_id = queries.claim_waiting(study, storage)
        claim, seen["rows"] = seen["rows"], 0
        finish(storage, trial_id)
        assert len(watch.new()) == 1
        return claim, seen["rows"]

    assert costs(200) == costs(20)


# --- the storage work of one trial -------------------------------------------------------------

# Upper bounds of one one-epoch trial's storage work, claim to tell, in a worker: SQL
# statements and commits on PostgreSQL, lines in the journal. Each write is a transaction or a
# line. Before the trial's values were gathered into two attributes, its parameters written
# with the trial when planned and tell stopped reading the trial around it, a trial of this
# study took 91 statements, 35 commits and 32 journal lines.
MAX_STATEMENTS, MAX_COMMITS, MAX_JOURNAL_LINES = 24, 8, 7


def trial_costs(url: str, make_experiment, n_trials: int = 6) -> list[dict[str, int]]:
    """SQL statements and commits (RDB), or journal lines, of each trial of a small random
    search run through the worker's own steps (claim, run, tell)."""
    from mlpsearch.data import load_data
    from mlpsearch.objective import Objective
    from mlpsearch.study import open_study, plan
    from mlpsearch.workers import run_trial

    exp = make_experiment("costs", n_trials=n_trials, epochs=1)
    storage = open_storage(url)
    study = open_study(exp, storage)
    plan(exp, study, storage, echo=lambda line: None)
    study = queries.direct(study, storage)
    objective = Objective(exp, load_data(exp))
    seen = Counter()
    journal = None
    if isinstance(storage, RDBStorage):

        def statement(*args):
            seen["statements"] += 1

        def commit(conn):
            seen["commits"] += 1

        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", statement)
        sqlalchemy.event.listen(storage.engine, "commit", commit)
    else:
        journal = Path(url.removeprefix("journal:"))
    costs = []
    for _ in range(n_trials):
        seen.clear()
        lines = journal.read_bytes().count(b"\n") if journal else 0
        trial_id = queries.claim_waiting(study, storage)
        run_trial(study, storage, objective, trial_id)
        if journal:
            seen["journal_lines"] = journal.read_bytes().count(b"\n") - lines
        costs.append(dict(seen))
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * n_trials
    return costs


@pytest.mark.parametrize("kind", ["journal", "postgres"])
def test_a_trial_writes_little_and_the_same_whatever_the_study(
    kind, request, tmp_path, make_experiment
):
    if kind == "journal":
        url = f"journal:{tmp_path / 'journal.log'}"
    else:
        server = request.getfixturevalue("postgres")
        url = server.url(server.create_database())
    costs = trial_costs(url, make_experiment)
    assert all(c == costs[0] for c in costs), costs  # the sixth trial costs what the first did
    if kind == "journal":
        assert max(c["journal_lines"] for c in costs) <= MAX_JOURNAL_LINES, costs
    else:
        assert max(c["statements"] for c in costs) <= MAX_STATEMENTS, costs
        assert max(c["commits"] for c in costs) <= MAX_COMMITS, costs


def test_planning_on_postgres_is_one_transaction_that_reads_as_optunas_own(
    postgres, tmp_path, make_experiment
):
    """plan() writes its trials in one transaction on PostgreSQL (Optuna's API elsewhere):
    the trials read back exactly as those planned through Optuna's API, extending a study
    numbers the new trials after the old, and a worker writes none of their parameters."""
    from mlpsearch.study import open_study, plan

    small, large = (make_experiment("plan", n_trials=n, epochs=1) for n in (7, 30))
    read = {}
    for kind, url in (
        ("postgres", postgres.url(postgres.create_database())),
        ("journal", f"journal:{tmp_path / 'journal.log'}"),
    ):
        storage = open_storage(url)
        study = open_study(small, storage)
        plan(small, study, storage, echo=lambda line: None)
        if kind == "postgres":
            seen = rows_read(storage)  # its "queries": the SELECTs
            plan(large, study, storage, echo=lambda line: None)  # extended: 23 more
            assert seen["queries"] <= 20, seen  # not a transaction per trial
        else:
            plan(large, study, storage, echo=lambda line: None)
        read[kind] = [
            (t.number, t.state, t.params, t.distributions, t.user_attrs, t.system_attrs)
            for t in study.get_trials()
        ]
    assert [r[0] for r in read["postgres"]] == list(range(30))
    assert [r[4]["slot"] for r in read["postgres"]] == list(range(30))
    assert read["postgres"] == read["journal"]
