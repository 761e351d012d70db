"""Running a study: the parent process of ``mlpsearch run`` and ``mlpsearch worker``.

The parent loads and checks the data, opens the storage, plans the study (``run`` only: see
:mod:`mlpsearch.study`), then runs worker processes (:mod:`mlpsearch.workers`) until no trial
waits or runs, restarting them if one is killed, and shows progress from the storage. It ends
with the trial table and the best trial, or with one line saying what stopped it and how to
resume; every finished trial is kept either way.

Several machines share one study through one storage (PostgreSQL): each runs ``mlpsearch run``
with the same experiment, or ``mlpsearch worker``, which joins: it takes the experiment from
the study and plans nothing. Both are one body, :func:`_run`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from mlpsearch import confirm, trials
from mlpsearch.config import Experiment, check_memory_for_data
from mlpsearch.data import check_same_data, load_data
from mlpsearch.engine.files import LockTimeout, write_atomic
from mlpsearch.errors import ConfigError, Interrupted, RunError
from mlpsearch.liveness import fail_stale
from mlpsearch.postgres import check_storage_room, connections_needed
from mlpsearch.progress import Progress
from mlpsearch.queries import FinishedTrials
from mlpsearch.storage import default_url, mask, open_storage
from mlpsearch.study import (
    find_study,
    load_study,
    open_study,
    plan,
    planning_lock,
    queue,
    size,
    size_target,
)
from mlpsearch.summary import SUMMARY_FILE, best_text, counts_text, write_summary
from mlpsearch.workers import WorkerPool, n_workers

MAX_RESTARTS = 3  # worker pools rebuilt after a worker died, per run


@dataclass(frozen=True)
class RunResult:
    """How a run (or a join) ended.

    Attributes
    ----------
    study : the study, as it is now.
    folder : its results folder (None for a join, which writes none).
    n_trials : the study's size.
    finished : trials that ended, here or anywhere.
    ran : trials this run's workers ran.
    best : the study's best search trial (the confirmed best where confirmed), if any.
    summary : what ``summary.json`` holds (a run), else None (a join).
    """

    study: optuna.Study
    folder: Path | None
    n_trials: int
    finished: int
    ran: int
    best: trials.TrialRecord | None
    summary: dict | None = None


def run_study(
    exp: Experiment,
    results: Path = Path("results"),
    storage_url: str | None = None,
    echo: Callable[[str], None] = print,
    resume_hint: str = "",
    target: int | None = None,
    bar: bool | None = None,
) -> RunResult:
    """Run ``exp`` until its ``n_trials`` slots are finished; resumes an existing study.

    ``target``: a size asked for now (``--n-trials``), stored with the study; without one, the
    study resumes to the size an earlier one stored (:func:`mlpsearch.study.size_target`).
    ``bar``: the progress bar (None: where it can be seen; False: never).

    Bad input (data, storage URL, results folder, a different experiment under the same
    name) raises ConfigError or DataError before anything is written.
    """
    folder = results / exp.study.name
    check_folder(folder)
    url = storage_url or exp.study.storage or default_url(results, exp.study.name)
    return _run(exp, url, folder, echo, resume_hint, target=target, bar=bar)


def join_study(
    storage_url: str,
    study_name: str,
    n_jobs: int | None = None,
    echo: Callable[[str], None] = print,
    resume_hint: str = "",
) -> RunResult:
    """Run the waiting trials of an existing study (``mlpsearch worker``).

    The experiment comes from the study itself (stored by the ``run`` that created it), so
    every machine trains the same way; its data must be reachable under the same name here.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(storage_url, create=False)
    exp = trials.stored_experiment(find_study(storage, study_name, storage_url))
    if n_jobs is not None:
        exp = exp.replace_study(n_jobs=n_jobs)
    check_storage_room(storage, connections_needed(exp.study.n_jobs), storage_url)
    return _run(exp, storage_url, None, echo, resume_hint, storage)


def _run(
    exp: Experiment,
    url: str,
    folder: Path | None,
    echo: Callable[[str], None],
    hint: str,
    storage: optuna.storages.BaseStorage | None = None,
    target: int | None = None,
    bar: bool | None = None,
) -> RunResult:
    """The body of a run (``folder`` given: plan the study, write its results there) and of a
    join (``folder`` None: run what is planned)."""
    # we say what matters ourselves, in one line: Optuna would also log, as warnings, the
    # database errors it works around (e.g. while the database goes away mid-query)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    hint = hint or "the same command"
    study = pool = None
    try:
        data = load_data(exp)  # bad data stops us before any study exists
        check_memory_for_data(exp, data.n_features, data.n_classes, len(data.y_train))
        storage = storage or open_storage(
            url, connections=connections_needed(exp.study.n_jobs)
        )
        if folder is None:
            study = load_study(exp, storage)
            check_same_data(study, data, "join")
            pool = WorkerPool(exp)
            n_trials = size(exp, study)
        else:
            with planning_lock(storage, exp.study.name):
                study = open_study(exp, storage)
                check_same_data(study, data)  # before anything is written to the study
                exp = size_target(exp, study, target, echo)
                pool = WorkerPool(exp)  # the input is good: they boot while we plan
                _make_folder(folder)
                stored = exp.replace_study(storage=mask(url))
                write_atomic(folder / "experiment.toml", stored.to_toml())
                n_trials = plan(exp, study, storage, echo)
        waiting, running = queue(study, storage)
        workers = n_workers(exp.study.n_jobs, waiting, running)
        if folder is None:
            finished = trials.count_finished(study)
            echo(
                f"joined study {exp.study.name}: {finished} of {n_trials} trials finished, "
                f"{waiting} waiting, {running} running; {workers} workers; storage {mask(url)}"
            )
        else:
            echo(
                f"study {exp.study.name}: {exp.study.sampler} search, {n_trials} trials "
                f"({waiting} to run{f', {running} running elsewhere' if running else ''}) on "
                f"{data.name} [{len(data.y_train)} train / {len(data.y_val)} val], "
                f"{workers} workers; storage {mask(url)}"
            )
        loop = _WorkLoop(pool, url, study, storage, echo, hint, bar)
        ran = loop.work(n_trials)
        summary = None
        if folder is not None:
            write_table(study, folder)
            if exp.study.confirm.on:
                ran += loop.confirm(exp, n_trials)
                write_table(study, folder)
            summary = write_summary(study, folder)
    except Exception as err:
        if isinstance(err, Interrupted) and folder is not None and study is not None:
            _keep_table(study, folder)
        _raise_run_error(err, study, url, hint)
        raise
    finally:
        if pool is not None:
            pool.close()
    result = RunResult(
        study, folder, n_trials, trials.count_finished(study), ran, trials.best(study), summary
    )
    _say_how_it_ended(result, url, echo)
    return result


@dataclass(frozen=True)
class _WorkLoop:
    """The workers of a run or a join at work on ``study``: running them until no trial waits
    or runs, for the search's trials and for the confirmation's alike."""

    pool: WorkerPool
    url: str
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    echo: Callable[[str], None]
    hint: str
    bar: bool | None = None

    def confirm(self, exp: Experiment, n_trials: int) -> int:
        """Enqueue the confirmation trials of the best configurations (:mod:`mlpsearch.confirm`)
        that are missing, and run them (with any left from an earlier run); how many ran here."""
        top, seeds = exp.study.confirm.top, exp.study.confirm.seeds
        with planning_lock(self.storage, exp.study.name):
            confirm.enqueue(self.study, top, seeds)
        waiting, running = queue(self.study, self.storage)
        if not (waiting or running):
            return 0
        self.echo(
            f"confirming the best {top} configurations on {seeds} fresh seeds each: "
            f"{waiting} trials to run (not counted in n_trials, never pruned)"
        )
        return self.work(n_trials + top * seeds)

    def work(self, n_trials: int) -> int:
        """Run the workers until no trial waits or runs; restart them if one is killed. How
        many trials they ran; ``n_trials``: the count the progress shows."""
        study, storage = self.study, self.storage
        progress = Progress(n_trials, echo=self.echo, bar=self.bar)
        finished = FinishedTrials(study, storage)  # each finished trial read once

        def watch() -> None:
            progress.update(finished.new())

        watch()
        restarts = ran = 0
        try:
            while True:
                died, count = self.pool.run(self.url, study, storage, watch)
                ran += count
                if not died:
                    return ran
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise RunError("workers keep dying; see the failed trials' reasons")
                requeued = fail_stale(study, storage)
                self.echo(f"a worker died; re-queued trial(s) {requeued}; restarting the workers")
                self.pool.restart()
        except KeyboardInterrupt:
            progress.close()
            raise Interrupted(
                f"interrupted: {trials.count_finished(study)} of {n_trials} trials finished and "
                f"kept; resume with: {self.hint}"
            ) from None
        finally:
            progress.close()


def _say_how_it_ended(result: RunResult, url: str, echo: Callable[[str], None]) -> None:
    """A join: how many trials ran here. A run: the counts by outcome, the confirmed best with
    its spread, where the table and summary are, and the command to run next."""
    if result.folder is None or result.summary is None:
        echo(
            f"study {result.study.study_name}: {result.finished} of {result.n_trials} trials "
            f"finished; {result.ran} ran here"
        )
        return
    summary, folder = result.summary, result.folder
    echo(f"trials: {counts_text(summary['counts'])}")
    if summary["best"] is not None:
        echo(f"best: {best_text(summary['best'])}")
    default = url == default_url(folder.parent, summary["study"])
    where = str(folder) if default else f"--storage {mask(url)} --study {summary['study']}"
    echo(f"table: {folder / 'trials.csv'}; summary: {folder / SUMMARY_FILE}")
    echo(f"next: mlpsearch report {where}")


def write_table(study: optuna.Study, folder: Path) -> None:
    """``folder/trials.csv``, written atomically (OSError raised, no partial file)."""
    from mlpsearch.tables import write_trials_csv  # pandas: only the parent needs it

    write_trials_csv(study, folder / "trials.csv")


def _keep_table(study: optuna.Study, folder: Path) -> None:
    """trials.csv of an interrupted run (Ctrl-C, SIGTERM, SIGHUP), if it can still be written."""
    try:
        write_table(study, folder)
    except Exception:  # the storage or the disk that stopped us: the message says enough
        pass


# --- what stops a run ------------------------------------------------------------------------


def _raise_run_error(err: Exception, study: optuna.Study | None, url: str, hint: str) -> None:
    """Raise RunError (one line) for a full disk, a lost database or a lock held too long;
    return for anything else. The exception may come from a worker: loky re-raises it here.
    """
    if isinstance(err, LockTimeout):
        problem, advice = str(err), "when it is running again or gone"
    elif isinstance(err, OSError):
        problem = f"{err.strerror or err}: {err.filename or mask(url)}"
        advice = "fix it (e.g. free disk space)"
    elif _is_storage_error(err):
        cause = err.__cause__ if _is_storage_error(err.__cause__) else err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        problem = f"lost the storage {mask(url)}: {first}"
        advice = "when the database is back"
    else:
        return
    kept = f"finished trials are kept in {mask(url)}"
    if study is not None:
        try:
            kept = f"{trials.count_finished(study)} {kept}"
        except Exception:  # unreachable now; it held every trial when last written
            pass
    raise RunError(f"{problem}; {kept}; {advice}, resume with: {hint}") from None


def _is_storage_error(err: BaseException | None) -> bool:
    """An error of the database connection (SQLAlchemy, its driver, Optuna's wrapper)."""
    if isinstance(err, optuna.exceptions.StorageInternalError):
        return True
    return any(c.__module__.split(".")[0] in ("sqlalchemy", "psycopg2") for c in type(err).__mro__)


# --- the results folder ----------------------------------------------------------------------


def check_folder(folder: Path) -> None:
    """Refuse a results folder that cannot be made or written, without creating anything."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"results folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"results folder {folder}: {existing} is not writable")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"results folder {folder}: not writable ({err.strerror})") from None
