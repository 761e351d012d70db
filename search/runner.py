"""Running a study: create or resume it, enqueue its trials, train them in worker processes.

The parent process owns the plan: it loads and checks the data, opens the storage, fails and
re-queues the trials of dead workers, and enqueues one WAITING trial per missing *slot*
(``0 .. n_trials-1``), with its parameters already drawn for random and grid search and its
training seed. Workers (joblib's loky processes) only claim WAITING trials, train and tell, so
a study never runs more than ``n_trials`` trials and its configurations do not depend on how
many workers ran them. The parent watches the storage to show progress.

Several machines share one study through one storage (PostgreSQL): each runs ``mlpsearch run``
with the same experiment, or ``mlpsearch worker``, which only joins. Planning happens under a
lock (:func:`mlpsearch.storage.planning_lock`), so parents started together enqueue each slot
once; workers stay until no trial is waiting or running anywhere, so that they take over the
trials of a machine that died.
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import BrokenProcessPool
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.engine import Diverged
from mlpsearch.engine.data import Dataset
from mlpsearch import space
from mlpsearch.config import Experiment, parse_experiment
from mlpsearch.errors import ConfigError, Interrupted, RunError
from mlpsearch.data import check_same_data, load_data
from mlpsearch.objective import Objective
from mlpsearch.progress import Progress
from mlpsearch.storage import (
    Heartbeat,
    claim_waiting,
    default_url,
    fail_stale,
    mask,
    open_storage,
    planning_lock,
)

MAX_RESTARTS = 3  # worker pools rebuilt after a worker died, per run
IDLE_POLL_SECONDS = 0.2  # how often an idle worker looks for re-queued trials


@dataclass(frozen=True)
class RunResult:
    study: optuna.Study
    folder: Path
    finished: int
    best: FrozenTrial | None


# --- the parent ------------------------------------------------------------------------------


def run_study(
    exp: Experiment,
    results: Path = Path("results"),
    storage_url: str | None = None,
    echo: Callable[[str], None] = print,
    resume_hint: str = "",
) -> RunResult:
    """Run ``exp`` until its ``n_trials`` slots are finished; resumes an existing study.

    Bad input (data, storage URL, results folder, a different experiment under the same
    name) raises ConfigError or DataError before anything is written.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we say what matters ourselves
    folder = results / exp.study.name
    check_folder(folder)
    url = storage_url or exp.study.storage or default_url(results, exp.study.name)
    hint = resume_hint or "the same command"
    study = executor = None
    try:
        data = load_data(exp)  # bad data stops us before any study exists
        storage = open_storage(url)
        with planning_lock(storage, exp.study.name):
            study = open_study(exp, storage)
            check_same_data(study, data)
            executor = _start_workers(exp)  # the input is good: they boot while we plan
            _make_folder(folder)
            _write_atomic(
                folder / "experiment.toml", exp.replace_study(storage=mask(url)).to_toml()
            )
            n_trials = _plan(exp, study, storage, echo)
        waiting, running = _queue(study)
        echo(
            f"study {exp.study.name}: {exp.study.sampler} search, {n_trials} trials "
            f"({waiting} to run{f', {running} running elsewhere' if running else ''}) on "
            f"{data.name} [{len(data.y_train)} train / {len(data.y_val)} val], "
            f"{_n_workers(exp.study.n_jobs, waiting, running)} workers; storage {mask(url)}"
        )
        _work(executor, exp, url, study, storage, n_trials, echo, hint)
        write_table(study, folder)
    except Exception as err:
        _raise_run_error(err, study, url, hint)
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)
    best = _best(study)
    if best is not None:
        echo(
            f"best: trial {best.number}, validation error {best.value:.4f} "
            f"(train {best.user_attrs.get('best_train_error', float('nan')):.4f}); "
            f"table: {folder / 'trials.csv'}"
        )
    return RunResult(study, folder, _finished(study), best)


def join_study(
    storage_url: str,
    study_name: str,
    n_jobs: int | None = None,
    echo: Callable[[str], None] = print,
    resume_hint: str = "",
) -> int:
    """Run the waiting trials of an existing study (``mlpsearch worker``); how many ran here.

    The experiment comes from the study itself (stored by the ``run`` that created it), so
    every machine trains the same way; its data must be reachable under the same name here.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, create=False)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        held = ", ".join(sorted(names)) or "no study"
        raise ConfigError(
            f"--study: no study {study_name!r} in {mask(storage_url)} (it holds: {held}); "
            "create it with mlpsearch run EXPERIMENT --storage URL"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    exp = stored_experiment(study)
    if n_jobs is not None:
        exp = exp.replace_study(n_jobs=n_jobs)
    hint = resume_hint or "the same command"
    data = load_data(exp)  # the data must be here too; DataError (one line) if not
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=make_sampler(exp),
        pruner=make_pruner(exp),
    )
    check_same_data(study, data, "join")
    n_trials = max(exp.study.n_trials, max(_slots(study), default=-1) + 1)
    waiting, running = _queue(study)
    echo(
        f"joined study {study_name}: {_finished(study)} of {n_trials} trials finished, "
        f"{waiting} waiting, {running} running; "
        f"{_n_workers(exp.study.n_jobs, waiting, running)} workers; "
        f"storage {mask(storage_url)}"
    )
    executor = _start_workers(exp)
    try:
        ran = _work(executor, exp, storage_url, study, storage, n_trials, echo, hint)
    except Exception as err:
        _raise_run_error(err, study, storage_url, hint)
        raise
    finally:
        executor.shutdown(wait=True, kill_workers=True)
    echo(f"study {study_name}: {_finished(study)} of {n_trials} trials finished; {ran} ran here")
    return ran


def stored_experiment(study: optuna.Study) -> Experiment:
    """The experiment a study was created from (its ``experiment_toml`` user attribute)."""
    text = study.user_attrs.get("experiment_toml")
    if not isinstance(text, str):
        raise ConfigError(
            f"study {study.study_name!r} holds no experiment (it was not created by "
            "mlpsearch run); nothing to join"
        )
    try:
        return parse_experiment(tomllib.loads(text), source=f"study {study.study_name}")
    except (tomllib.TOMLDecodeError, ConfigError) as err:
        raise ConfigError(f"study {study.study_name!r}: its stored experiment: {err}") from None


def _work(
    executor,
    exp: Experiment,
    url: str,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    n_trials: int,
    echo: Callable[[str], None],
    hint: str,
) -> int:
    """Run worker processes until no trial waits or runs; restart them if one is killed."""
    progress = Progress(n_trials, echo=echo)
    progress.update(study.get_trials(deepcopy=False))
    restarts = ran = 0
    try:
        while True:
            died, count = _run_workers(executor, exp, url, study, storage, progress)
            ran += count
            if not died:
                break
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise RunError("workers keep dying; see the failed trials' reasons")
            requeued = fail_stale(study, storage)
            echo(f"a worker died; re-queued trial(s) {requeued}; restarting the workers")
            executor.shutdown(wait=True, kill_workers=True)
            executor = _start_workers(exp)
    except KeyboardInterrupt:
        progress.close()
        raise Interrupted(
            f"interrupted: {_finished(study)} of {n_trials} trials finished and kept; "
            f"resume with: {hint}"
        ) from None
    finally:
        progress.close()
        if restarts:
            executor.shutdown(wait=True, kill_workers=True)
    return ran


def write_table(study: optuna.Study, folder: Path) -> None:
    """``folder/trials.csv``; a failed write leaves no partial file (OSError raised)."""
    from mlpsearch.tables import write_trials_csv  # pandas: only the parent needs it

    try:
        write_trials_csv(study, folder / "trials.csv")
    except OSError:
        (folder / "trials.csv.tmp").unlink(missing_ok=True)
        raise


def _raise_run_error(err: Exception, study: optuna.Study | None, url: str, hint: str) -> None:
    """Raise RunError (one line) for a full disk or a lost database; return for anything else.

    The exception may come from a worker process: loky re-raises it here.
    """
    if isinstance(err, OSError):
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
            kept = f"{_finished(study)} {kept}"
        except Exception:  # unreachable now; it held every trial when last written
            pass
    raise RunError(f"{problem}; {kept}; {advice}, resume with: {hint}") from None


def _is_storage_error(err: BaseException | None) -> bool:
    """An error of the database connection (SQLAlchemy, its driver, Optuna's wrapper)."""
    if isinstance(err, optuna.exceptions.StorageInternalError):
        return True
    return any(c.__module__.split(".")[0] in ("sqlalchemy", "psycopg2") for c in type(err).__mro__)


def _queue(study: optuna.Study) -> tuple[int, int]:
    """How many trials are waiting and how many are running."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return waiting, len(trials) - waiting


def _n_workers(n_jobs: int, waiting: int, running: int) -> int:
    """Worker processes to start: one per waiting trial, and one to watch trials elsewhere."""
    return min(n_jobs, max(waiting, 1 if running else 0))


def open_study(exp: Experiment, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or load it after checking it was made from the same experiment.

    An existing study is only read here: a refused resume leaves it byte for byte as it was
    (the journal's ``create_study`` would append a record even when the study exists).
    """
    name = exp.study.name
    sampler, pruner = make_sampler(exp), make_pruner(exp)
    if name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    stored = study.user_attrs.get("experiment")
    mine = _identity(exp)
    if stored is None:
        study.set_user_attr("experiment", mine)
        study.set_user_attr("experiment_toml", exp.without_storage().to_toml())
    elif stored != mine:
        changed = sorted(k for k in {*stored, *mine} if stored.get(k) != mine.get(k))
        raise ConfigError(
            f"study {name!r} already exists with a different experiment "
            f"({', '.join(changed)} changed); use --study NAME for a new study"
        )
    return study


def _identity(exp: Experiment) -> dict[str, str]:
    """What must not change when a study is resumed (n_trials and n_jobs may)."""
    return {
        "sampler": exp.study.sampler,
        "seed": str(exp.study.seed),
        "pruner": exp.study.pruner,
        "data": repr(exp.data),
        "train": repr(sorted(exp.train.items())),
        **{f"space.{k}": repr(v) for k, v in sorted(exp.space.items())},
    }


def make_sampler(exp: Experiment) -> optuna.samplers.BaseSampler:
    seed = exp.study.seed
    if exp.study.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if exp.study.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.RandomSampler(seed=seed)  # random and grid trials come enqueued


def make_pruner(exp: Experiment) -> optuna.pruners.BasePruner:
    if exp.study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if exp.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=exp.train["epochs"])
    return optuna.pruners.NopPruner()


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


def _write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a full disk leaves the old file, or none)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _plan(
    exp: Experiment,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    echo: Callable[[str], None],
) -> int:
    """Re-queue trials of dead workers and enqueue the missing slots; the study's size."""
    requeued = fail_stale(study, storage)
    if requeued:
        echo(f"re-queued trial(s) {requeued}: their workers died")
    n_trials = exp.study.n_trials
    configs: list[dict] | None = None
    if exp.study.sampler == "grid":
        configs = space.grid(exp)
        if n_trials > len(configs):
            echo(f"the grid has {len(configs)} configurations; running all of them")
            n_trials = len(configs)
    taken = _taken_slots(study)
    for slot in range(n_trials):
        if slot in taken:
            continue
        if configs is not None:
            params = configs[slot]
        elif exp.study.sampler == "random":
            params = space.draw_random(exp, slot)
        else:
            params = {}  # TPE and QMC sample in the worker, knowing the trials before
        seed = space.slot_seed(exp.study.seed, slot)
        study.enqueue_trial(params, user_attrs={"slot": slot, "seed": seed})
    return max(n_trials, max(taken, default=-1) + 1)


def _slots(study: optuna.Study) -> set[int]:
    return {
        t.user_attrs["slot"] for t in study.get_trials(deepcopy=False) if "slot" in t.user_attrs
    }


def _taken_slots(study: optuna.Study) -> set[int]:
    """Slots with a trial that is waiting, running or finished and not superseded by a retry."""
    trials = study.get_trials(deepcopy=False)
    superseded = {
        t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs
    }
    return {
        t.user_attrs["slot"]
        for t in trials
        if "slot" in t.user_attrs and t.number not in superseded
    }


def _finished(study: optuna.Study) -> int:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return len(trials) + sum(
        1
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if not str(t.user_attrs.get("fail_reason", "")).endswith("re-queued")
    )


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: (t.value, t.number)) if complete else None


def _start_workers(exp: Experiment):
    """A pool of ``n_jobs`` worker processes, booting (imports, data) in the background."""
    # Killed workers leave semaphores that loky's resource tracker removes, with a warning on
    # stderr at exit that only says so; the tracker takes its warning filters from ours.
    if _QUIET_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(_QUIET_TRACKER)
    threads = max(1, (os.cpu_count() or 1) // exp.study.n_jobs)
    executor = get_reusable_executor(
        max_workers=exp.study.n_jobs,
        env={v: str(threads) for v in _THREAD_VARS},
        reuse=False,
        initializer=_boot_quietly,
        initargs=(exp,),
    )
    executor.submit(_boot_quietly, exp)  # start the processes now
    return executor


def _boot_quietly(exp: Experiment) -> None:
    """Boot ahead of the first task; a failure (bad data) is left for the task to raise,
    since loky would print an initializer's traceback on stderr."""
    try:
        _boot(exp)
    except Exception:
        pass


def _run_workers(
    executor,
    exp: Experiment,
    url: str,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    progress: Progress,
) -> tuple[bool, int]:
    """Run the workers until no trial waits or runs: (whether one died, trials they ran)."""
    n_workers = _n_workers(exp.study.n_jobs, *_queue(study))
    if n_workers == 0:
        return False, 0
    threads = max(1, (os.cpu_count() or 1) // exp.study.n_jobs)
    pending = {executor.submit(worker, exp, url, threads) for _ in range(n_workers)}
    ran = 0
    try:
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            progress.update(study.get_trials(deepcopy=False))
            for future in done:
                ran += future.result()  # a worker's own exception: OSError or a bug
    except BrokenProcessPool:  # a worker was killed: its trial is re-queued
        _stop(executor, study, storage)
        return True, ran
    except BaseException:  # Ctrl-C, a full disk, or a bug: stop everything, keep what finished
        _stop(executor, study, storage)
        raise
    progress.update(study.get_trials(deepcopy=False))
    return False, ran


def _stop(executor, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Kill the workers, then fail and re-queue the trials they were running."""
    executor.shutdown(wait=True, kill_workers=True)
    try:
        fail_stale(study, storage)
    except Exception:  # a full disk, a lost database: the next run re-queues them
        pass


_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# --- the worker ------------------------------------------------------------------------------

_booted: dict[str, Any] = {}


def _boot(exp: Experiment) -> Dataset:
    """Once per worker process: quiet Optuna, load (memory-map) the experiment's data."""
    key = repr(exp.data)
    if key not in _booted:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _booted[key] = load_data(exp)
    return _booted[key]


def worker(exp: Experiment, url: str, threads: int) -> int:
    """Claim and run WAITING trials until none waits or runs anywhere; how many it ran.

    Runs in a worker process; BLAS is held to ``threads`` threads so that the workers share
    the cores instead of oversubscribing them. While other processes (here or on other
    machines) still run trials, it waits, so that it can take over those of a worker that dies.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        data = _boot(exp)
        storage = open_storage(url)
        study = optuna.load_study(
            study_name=exp.study.name,
            storage=storage,
            sampler=make_sampler(exp),
            pruner=make_pruner(exp),
        )
        check_same_data(study, data, "run trials of", record=False)
        objective = Objective(exp, data)
        ran = 0
        while True:
            fail_stale(study, storage)
            trial_id = claim_waiting(study, storage)
            if trial_id is not None:
                run_trial(study, storage, objective, trial_id)
                ran += 1
            elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
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
        value = objective(trial, heartbeat)
    except optuna.TrialPruned:
        heartbeat.stop()
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        heartbeat.stop()
        raise
    except (Diverged, Exception) as err:  # the trial's own failure; the study goes on
        heartbeat.stop()
        if "fail_reason" not in trial.user_attrs:  # raised before the objective could say
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            trial.set_user_attr("traceback", traceback.format_exc())
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        heartbeat.stop()
        study.tell(trial, value, skip_if_finished=True)
