"""A study and its plan: open or create it, its identity, sampler and pruner, and its slots.

A study of ``n_trials`` trials has the *slots* ``0 .. n_trials-1``. Planning enqueues one
WAITING trial per slot not yet taken, with its training seed and, for random and grid search,
its parameters already drawn, so that the configurations do not depend on how many workers run
them. Planning happens under :func:`planning_lock`, so that parents started together on one
storage enqueue each slot once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from mlpsearch import queries, space, trials
from mlpsearch.config import Experiment
from mlpsearch.engine.files import file_lock
from mlpsearch.errors import ConfigError
from mlpsearch.journal import journal_path
from mlpsearch.liveness import fail_stale
from mlpsearch.samplers import make_sampler, qmc_configs
from mlpsearch.storage import LOCK_SECONDS, database_lock, mask


def open_study(exp: Experiment, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or load it after checking it was made from the same experiment.

    An existing study is only read here: a refused resume leaves it byte for byte as it was
    (the journal's ``create_study`` would append a record even when the study exists).
    """
    name = exp.study.name
    if name in optuna.get_all_study_names(storage):
        study = load_study(exp, storage)
    else:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=make_sampler(exp),
            pruner=make_pruner(exp),
            load_if_exists=True,
        )
    stored = study.user_attrs.get("experiment")
    mine = identity(exp)
    if stored is None:
        study.set_user_attr("experiment", mine)
        study.set_user_attr(trials.EXPERIMENT_TOML, exp.without_storage().to_toml())
    elif not isinstance(stored, dict):
        raise ConfigError(
            f"study {name!r}: its stored experiment identity is damaged ({str(stored)[:40]!r} "
            "is not a table); not resumed"
        )
    elif stored != mine:
        changed = sorted(k for k in {*stored, *mine} if stored.get(k) != mine.get(k))
        raise ConfigError(
            f"study {name!r} already exists with a different experiment "
            f"({', '.join(changed)} changed); use --study NAME for a new study"
        )
    return study


def load_study(exp: Experiment, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The existing study of ``exp``, with the experiment's sampler and pruner."""
    return optuna.load_study(
        study_name=exp.study.name,
        storage=storage,
        sampler=make_sampler(exp),
        pruner=make_pruner(exp),
    )


def find_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> optuna.Study:
    """The study ``name`` in the storage of ``url``; ConfigError (one line) if it has none."""
    names = optuna.get_all_study_names(storage)
    if name not in names:
        held = ", ".join(sorted(names)) or "no study"
        raise ConfigError(
            f"--study: no study {name!r} in {mask(url)} (it holds: {held}); "
            "create it with mlpsearch run EXPERIMENT --storage URL"
        )
    return optuna.load_study(study_name=name, storage=storage)


def identity(exp: Experiment) -> dict[str, str]:
    """What must not change when a study is resumed (n_trials and n_jobs may)."""
    return {
        "sampler": exp.study.sampler,
        "seed": str(exp.study.seed),
        "pruner": exp.study.pruner,
        "data": repr(exp.data),
        "train": repr(sorted(exp.train.items())),
        **{f"space.{k}": repr(v) for k, v in sorted(exp.space.items())},
    }


def make_pruner(exp: Experiment) -> optuna.pruners.BasePruner:
    if exp.study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    if exp.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=exp.train["epochs"])
    return optuna.pruners.NopPruner()


# --- planning the slots ----------------------------------------------------------------------


@contextmanager
def planning_lock(
    storage: optuna.storages.BaseStorage, study_name: str, timeout: float = LOCK_SECONDS
) -> Iterator[None]:
    """Held while a parent creates or loads a study and enqueues its slots.

    Two ``mlpsearch run`` started at the same moment on a fresh study would otherwise both
    see no slot taken and enqueue every slot twice. Journal and SQLite files: a file lock
    beside the file; PostgreSQL: a session advisory lock (released by the server if we die).
    Waits at most ``timeout`` seconds, then raises LockTimeout.
    """
    journal = journal_path(storage)
    if journal is not None:
        lock: Any = file_lock(f"{journal}.plan", timeout, f"journal {journal} (planning)")
    elif isinstance(storage, RDBStorage):
        lock = database_lock(storage.engine, f"mlpsearch:plan:{study_name}", timeout)
    else:
        lock = nullcontext()
    with lock:
        yield


def plan(
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
    elif exp.study.sampler == "qmc":
        configs = qmc_configs(exp, n_trials)
    taken = _taken_slots(study)
    new = []
    for slot in range(n_trials):
        if slot in taken:
            continue
        if configs is not None:
            params = configs[slot]
        elif exp.study.sampler == "random":
            params = space.draw_random(exp, slot)
        else:
            params = {}  # TPE samples in the worker, knowing the trials before
        seed = space.slot_seed(exp.study.seed, slot)
        new.append(waiting(exp, params, {trials.SLOT: slot, trials.SEED: seed}))
    queries.enqueue(study, storage, new)
    return max(n_trials, max(taken, default=-1) + 1)


def waiting(
    exp: Experiment, params: dict[str, Any], user_attrs: dict[str, Any]
) -> optuna.trial.FrozenTrial:
    """A WAITING trial holding ``params`` already (as Optuna's retry of a stale trial makes
    one), so that the worker writes no parameter when it suggests them (enqueue_trial's
    fixed parameters would be written one by one then)."""
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=params,
        distributions=space.distributions(exp, params),
        user_attrs=user_attrs,
    )


def size(exp: Experiment, study: optuna.Study) -> int:
    """How many trials the study has without planning: its target (``n_trials``, or what a
    ``--n-trials`` stored), or more if extended."""
    slots = {
        t.user_attrs[trials.SLOT]
        for t in study.get_trials(deepcopy=False)
        if trials.SLOT in t.user_attrs
    }
    target = study.user_attrs.get(TARGET_KEY)
    return max(
        target if isinstance(target, int) else exp.study.n_trials, max(slots, default=-1) + 1
    )


TARGET_KEY = "n_trials_target"  # study user attribute: the size last asked for with --n-trials


def size_target(
    exp: Experiment, study: optuna.Study, given: int | None, echo: Callable[[str], None]
) -> Experiment:
    """``exp`` with the study's size: ``given`` (``--n-trials`` now, stored with the study for
    later runs), else the size an earlier ``--n-trials`` stored (said in one line), else the
    experiment's own ``n_trials``."""
    if given is not None:
        if study.user_attrs.get(TARGET_KEY) != given:
            study.set_user_attr(TARGET_KEY, given)
        return exp
    stored = study.user_attrs.get(TARGET_KEY)
    if not isinstance(stored, int) or stored == exp.study.n_trials:
        return exp
    echo(
        f"study {exp.study.name}: resuming to its target of {stored} trials, set by an earlier "
        f"--n-trials (the experiment says {exp.study.n_trials}; --n-trials N changes it)"
    )
    return exp.replace_study(n_trials=stored)


def _taken_slots(study: optuna.Study) -> set[int]:
    """Slots with a trial that is waiting, running or finished and not superseded by a retry."""
    every = study.get_trials(deepcopy=False)
    superseded = {
        t.system_attrs[trials.RETRY_OF] for t in every if trials.RETRY_OF in t.system_attrs
    }
    return {
        t.user_attrs[trials.SLOT]
        for t in every
        if trials.SLOT in t.user_attrs and t.number not in superseded
    }


def queue(study: optuna.Study, storage: optuna.storages.BaseStorage) -> tuple[int, int]:
    """How many trials are waiting and how many are running."""
    counts = queries.count_states(study, storage)
    return counts[TrialState.WAITING], counts[TrialState.RUNNING]
