"""Worker processes: the pool, the worker loop, and claiming and running one trial.

Workers (joblib's loky processes) only claim WAITING trials, train them and tell the result;
they never create trials, so a study never runs more than it planned. A worker stays until no
trial is waiting or running anywhere, so that it can take over the trials of a worker (here or
on another machine) that died. Each worker's BLAS is held to its share of the cores
(:mod:`mlpsearch.threads`).
"""

from __future__ import annotations

import math
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from typing import Any

import optuna
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import BrokenProcessPool
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from mlpsearch import queries, trials
from mlpsearch.config import Experiment
from mlpsearch.data import check_same_data, load_data
from mlpsearch.engine import Diverged
from mlpsearch.engine.data import Dataset
from mlpsearch.engine.files import LockTimeout
from mlpsearch.liveness import Heartbeat, fail_stale
from mlpsearch.objective import Objective
from mlpsearch.postgres import quiet_logs
from mlpsearch.queries import claim_waiting
from mlpsearch.storage import open_storage
from mlpsearch.study import load_study, queue
from mlpsearch.threads import thread_env, worker_threads

IDLE_POLL_SECONDS = 0.2  # how often an idle worker looks for re-queued trials
PARENT_POLL_SECONDS = 0.5  # how often a worker looks whether its parent is still there
WATCH_SECONDS = 0.25  # how often the parent looks at the storage while workers run
# How often the workers of one machine look for trials of dead workers (grace: 60 s): each of
# its n_jobs workers every n_jobs seconds, their turns spread at random, so that a fleet of
# many workers does not read the running trials many times a second.
LIVENESS_SECONDS = 1.0

# Killed workers leave semaphores that loky's resource tracker removes, with a warning on
# stderr at exit that only says so; the tracker takes its warning filters from ours.
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def n_workers(n_jobs: int, waiting: int, running: int) -> int:
    """Worker processes to start: one per waiting trial, and one to watch trials elsewhere."""
    return min(n_jobs, max(waiting, 1 if running else 0))


class WorkerPool:
    """``n_jobs`` worker processes for one experiment, booting (imports, data) once made."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.threads = worker_threads(exp.study.n_jobs)
        self._executor = self._start()

    def _start(self) -> Any:
        if _QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(_QUIET_TRACKER)
        executor = get_reusable_executor(
            max_workers=self.exp.study.n_jobs,
            env=thread_env(self.threads),
            reuse=False,
            initializer=_boot_quietly,
            initargs=(self.exp,),
        )
        executor.submit(_boot_quietly, self.exp)  # start the processes now
        return executor

    def run(
        self,
        url: str,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        watch: Callable[[], None],
    ) -> tuple[bool, int]:
        """Run workers until no trial waits or runs: (whether one died, trials they ran).

        ``watch()`` is called every :data:`WATCH_SECONDS` meanwhile (progress). A killed
        worker stops the others and returns; any other exception (Ctrl-C, a full disk, a
        worker's own error) stops them and is raised. Either way the trials they were running
        are failed and re-queued.
        """
        count = n_workers(self.exp.study.n_jobs, *queue(study, storage))
        if count == 0:
            return False, 0
        pending = {
            self._executor.submit(worker, self.exp, url, self.threads) for _ in range(count)
        }
        ran = 0
        try:
            while pending:
                done, pending = wait(pending, timeout=WATCH_SECONDS, return_when=FIRST_EXCEPTION)
                watch()
                for future in done:
                    ran += future.result()  # a worker's own exception: OSError or a bug
        except BrokenProcessPool:  # a worker was killed: its trial is re-queued
            self._stop(study, storage)
            return True, ran
        except BaseException:  # Ctrl-C, a full disk, or a bug: stop everything, keep what ended
            self._stop(study, storage)
            raise
        watch()
        return False, ran

    def restart(self) -> None:
        """Replace every worker process by a fresh one (after one was killed)."""
        self.close()
        self._executor = self._start()

    def close(self) -> None:
        self._executor.shutdown(wait=True, kill_workers=True)

    def _stop(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        """Kill the workers, then fail and re-queue the trials they were running."""
        self.close()
        try:
            fail_stale(study, storage)
        except Exception:  # a full disk, a lost database: the next run re-queues them
            pass


# --- in a worker process ---------------------------------------------------------------------

_booted: dict[str, Dataset] = {}


def _boot(exp: Experiment) -> Dataset:
    """Once per worker process: quiet Optuna, load (memory-map) the experiment's data."""
    key = repr(exp.data)
    if key not in _booted:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # as the parent: see runner._run
        quiet_logs()  # a database that goes away is our one line, not the SQL Optuna logs
        _booted[key] = load_data(exp)
    return _booted[key]


def _boot_quietly(exp: Experiment) -> None:
    """Boot ahead of the first task; a failure (bad data) is left for the task to raise,
    since loky would print an initializer's traceback on stderr."""
    try:
        _boot(exp)
    except Exception:
        pass


class Orphaned(BaseException):
    """The worker's parent is gone (killed, even by SIGKILL): stop at once, claim nothing.

    A BaseException, like KeyboardInterrupt, so that no trial records it as its own failure:
    the running trial is left to the next run, which sees its worker dead and re-queues it.
    """


_orphaned = threading.Event()


def _watch_parent() -> None:
    """Once per worker process: a thread that notices when the parent is gone."""
    if getattr(_watch_parent, "started", False):
        return
    _watch_parent.started = True  # type: ignore[attr-defined]
    parent = os.getppid()

    def watch() -> None:
        while not _orphaned.wait(PARENT_POLL_SECONDS):
            if os.getppid() != parent:  # re-parented: the parent died
                _orphaned.set()

    threading.Thread(target=watch, daemon=True, name="mlpsearch-parent-watch").start()


def _check_parent() -> None:
    if _orphaned.is_set():
        raise Orphaned


class _OrphanAwareHeartbeat:
    """The trial's heartbeat, stopping the trial at its next epoch once the parent is gone."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat

    def beat(self) -> None:
        _check_parent()
        self.heartbeat.beat()


def worker(exp: Experiment, url: str, threads: int) -> int:
    """Claim and run WAITING trials until none waits or runs anywhere; how many it ran.

    Runs in a worker process; BLAS is held to ``threads`` threads so that the workers share
    the cores instead of oversubscribing them. While other processes (here or on other
    machines) still run trials, it waits, so that it can take over those of a worker that dies.
    When its parent is gone it stops within a second or an epoch and the process exits,
    claiming nothing more.
    """
    _watch_parent()
    try:
        return _work(exp, url, threads)
    except Orphaned:
        os._exit(0)  # nobody to report to; loky would wait for the pipe of a dead parent


def _work(exp: Experiment, url: str, threads: int) -> int:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        data = _boot(exp)
        storage = open_storage(url, create=False)
        study = queries.direct(load_study(exp, storage), storage)
        check_same_data(study, data, "run trials of", record=False)
        objective = Objective(exp, data)
        ran = 0
        period = LIVENESS_SECONDS * max(1, exp.study.n_jobs)
        checked = time.monotonic() - random.uniform(0, period)  # the first turn comes soon
        while True:
            _check_parent()
            if time.monotonic() - checked >= period:  # not before every short trial
                fail_stale(study, storage)
                checked = time.monotonic()
            trial_id = claim_waiting(study, storage)
            if trial_id is not None:
                run_trial(study, storage, objective, trial_id)
                ran += 1
            elif queries.any_running(study, storage):
                time.sleep(IDLE_POLL_SECONDS)
            else:
                return ran


def run_trial(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    objective: Objective,
    trial_id: int,
) -> None:
    """Run one claimed trial and record how it ended; never raises for a trial's own failure.

    A trial that another process failed as stale meanwhile (its worker looked dead: paused,
    or cut off for longer than the grace period) is dropped: its retry runs it again.
    """
    try:
        _run_claimed(study, storage, objective, trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _run_claimed(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    objective: Objective,
    trial_id: int,
) -> None:
    heartbeat = Heartbeat(storage, trial_id)
    trial = optuna.Trial(study, trial_id)
    try:
        value = objective(trial, _OrphanAwareHeartbeat(heartbeat))
    except Orphaned:
        heartbeat.stop()  # no write of ours is under way when it is raised
        raise
    except optuna.TrialPruned:
        heartbeat.stop()
        _tell_trial(storage, study, trial, state=TrialState.PRUNED)
    except (optuna.exceptions.UpdateFinishedTrialError, LockTimeout):
        heartbeat.stop()  # dropped, or the storage is stuck: not the trial's own failure
        raise
    except (Diverged, Exception) as err:  # the trial's own failure; the study goes on
        heartbeat.stop()
        if not trials.has_result(trial):  # raised before the objective could say
            trials.store_failure(trial, f"{type(err).__name__}: {err}", traceback.format_exc())
        _tell_trial(storage, study, trial, state=TrialState.FAIL)
    else:
        heartbeat.stop()
        _tell_trial(storage, study, trial, value)


def _tell_trial(
    storage: optuna.storages.BaseStorage,
    study: optuna.Study,
    trial: optuna.Trial,
    value: float | None = None,
    state: TrialState | None = None,
) -> None:
    """``study.tell(trial, value, state, skip_if_finished=True)`` without the reads of the
    whole trial around it (Optuna's tell reads it before, for the sampler, and after, to
    return it: twelve statements on RDB). A trial finished meanwhile raises
    UpdateFinishedTrialError (:func:`run_trial` drops it)."""
    if (
        state is None
        and value is not None
        and math.isfinite(value)
        and type(study.sampler).after_trial is BaseSampler.after_trial  # it would ignore it
    ):
        storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [value])
        return
    from optuna.study import _tell

    _tell._tell_with_warning(study, trial, value, state, skip_if_finished=True)
