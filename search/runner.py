"""Running a study: create or resume it, enqueue its trials, train them in worker processes.

The parent process owns the plan: it loads and checks the data, opens the storage, fails and
re-queues the trials of dead workers, and enqueues one WAITING trial per missing *slot*
(``0 .. n_trials-1``), with its parameters already drawn for random and grid search and its
training seed. Workers (joblib's loky processes) only claim WAITING trials, train and tell, so
a study never runs more than ``n_trials`` trials and its configurations do not depend on how
many workers ran them. The parent watches the storage to show progress.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import BrokenProcessPool
from optuna.trial import FrozenTrial, TrialState

from engine import Diverged
from engine.data import Dataset
from search import space
from search.config import ConfigError, Experiment
from search.data import load_data
from search.objective import Objective
from search.progress import Progress
from search.storage import (
    Heartbeat,
    claim_waiting,
    default_url,
    fail_stale,
    mask,
    open_storage,
)

MAX_RESTARTS = 3  # worker pools rebuilt after a worker died, per run


class Interrupted(Exception):
    """Ctrl-C: finished trials are kept; the message says how to resume."""


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
    """Run ``exp`` until its ``n_trials`` slots are finished; resumes an existing study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we say what matters ourselves
    folder = results / exp.study.name
    _make_folder(folder)
    url = storage_url or exp.study.storage or default_url(results, exp.study.name)
    executor = _start_workers(exp)  # they boot while we plan
    study = progress = None
    try:
        data = load_data(exp)  # bad data stops us before any study exists
        storage = open_storage(url)
        study = open_study(exp, storage)
        (folder / "experiment.toml").write_text(
            exp.replace_study(storage=mask(url)).to_toml(), encoding="utf-8"
        )
        n_trials = _plan(exp, study, storage, echo)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        echo(
            f"study {exp.study.name}: {exp.study.sampler} search, {n_trials} trials "
            f"({waiting} to run) on {data.name} [{len(data.y_train)} train / "
            f"{len(data.y_val)} val], {min(exp.study.n_jobs, max(waiting, 1))} workers; "
            f"storage {mask(url)}"
        )
        progress = Progress(n_trials, echo=echo)
        progress.update(study.get_trials(deepcopy=False))
        restarts = 0
        while _run_workers(executor, exp, url, study, storage, progress, waiting):
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise RuntimeError("workers keep dying; see the failed trials' reasons")
            requeued = fail_stale(study, storage)
            echo(f"a worker died; re-queued trial(s) {requeued}; restarting the workers")
            waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            executor = _start_workers(exp)
    except KeyboardInterrupt:
        if progress is None or study is None:
            raise Interrupted("interrupted before any trial started") from None
        progress.close()
        raise Interrupted(
            f"interrupted: {_finished(study)} of {n_trials} trials finished and kept; "
            f"resume with: {resume_hint or 'the same command'}"
        ) from None
    finally:
        executor.shutdown(wait=True, kill_workers=True)
    progress.close()
    from search.tables import write_trials_csv  # pandas: only the parent needs it

    write_trials_csv(study, folder / "trials.csv")
    best = _best(study)
    if best is not None:
        echo(
            f"best: trial {best.number}, validation error {best.value:.4f} "
            f"(train {best.user_attrs.get('best_train_error', float('nan')):.4f}); "
            f"table: {folder / 'trials.csv'}"
        )
    return RunResult(study, folder, _finished(study), best)


def open_study(exp: Experiment, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or load it after checking it was made from the same experiment."""
    study = optuna.create_study(
        study_name=exp.study.name,
        storage=storage,
        direction="minimize",
        sampler=make_sampler(exp),
        pruner=make_pruner(exp),
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
            f"study {exp.study.name!r} already exists with a different experiment "
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


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"results folder {folder}: not writable ({err.strerror})") from None


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
    threads = max(1, (os.cpu_count() or 1) // exp.study.n_jobs)
    executor = get_reusable_executor(
        max_workers=exp.study.n_jobs,
        env={v: str(threads) for v in _THREAD_VARS},
        reuse=False,
        initializer=_boot,
        initargs=(exp,),
    )
    executor.submit(_boot, exp)  # start the processes now
    return executor


def _run_workers(
    executor,
    exp: Experiment,
    url: str,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    progress: Progress,
    waiting: int,
) -> bool:
    """Run the workers until the queue is empty; True if one died (the caller restarts)."""
    n_workers = min(exp.study.n_jobs, waiting)
    if n_workers == 0:
        return False
    threads = max(1, (os.cpu_count() or 1) // exp.study.n_jobs)
    pending = {executor.submit(worker, exp, url, threads) for _ in range(n_workers)}
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            progress.update(study.get_trials(deepcopy=False))
            for future in done:
                future.result()  # a worker's own exception is a bug: let it surface
    except BrokenProcessPool:  # a worker was killed: its trial is re-queued
        _stop(executor, study, storage)
        return True
    except BaseException:  # Ctrl-C, or a bug: stop everything, keep what finished
        _stop(executor, study, storage)
        raise
    progress.update(study.get_trials(deepcopy=False))
    return False


def _stop(executor, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Kill the workers, then fail and re-queue the trials they were running."""
    executor.shutdown(wait=True, kill_workers=True)
    fail_stale(study, storage)


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
    """Claim and run WAITING trials until none is left; how many it ran.

    Runs in a worker process; BLAS is held to ``threads`` threads so that the workers share
    the cores instead of oversubscribing them.
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
        objective = Objective(exp, data)
        ran = 0
        while True:
            fail_stale(study, storage)
            trial_id = claim_waiting(study, storage)
            if trial_id is None:
                return ran
            run_trial(study, storage, objective, trial_id)
            ran += 1


def run_trial(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    objective: Objective,
    trial_id: int,
) -> None:
    """Run one claimed trial and record how it ended; never raises for a trial's own failure."""
    heartbeat = Heartbeat(storage, trial_id)
    trial = optuna.Trial(study, trial_id)
    try:
        value = objective(trial, heartbeat)
    except optuna.TrialPruned:
        heartbeat.stop()
        study.tell(trial, state=TrialState.PRUNED)
    except (Diverged, Exception):
        heartbeat.stop()
        study.tell(trial, state=TrialState.FAIL)
    else:
        heartbeat.stop()
        study.tell(trial, value)
