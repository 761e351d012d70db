"""The stored trial: what the objective writes on an Optuna trial, and the one record every
reader gets back.

Writing: the objective calls :func:`training_seed`, :func:`store_start` and :func:`store_end`
(the worker :func:`store_failure` where the objective could not); the attribute names they use
are declared once, below, and nowhere else. Each storage write is a database transaction (or a
journal line), so a trial writes two user attributes, each one compact JSON table: ``start``
before training (what and where) and ``result`` at the end (curves, best epoch, reason).
:func:`attrs` gives them back by their names, as older studies stored them one attribute each.

Reading: :meth:`TrialRecord.from_frozen` turns an Optuna ``FrozenTrial`` into a frozen, typed
:class:`TrialRecord`, checking every stored value on the way: a value that is missing where it
must be (a complete trial without a best epoch) or malformed (a string where the config table
belongs, an unknown activation) is one :class:`~mlpsearch.errors.ConfigError` line naming the
trial and the attribute. On top of it: :func:`records`, :func:`best`, :func:`best_first`,
:func:`pick`, :func:`count_finished` and :func:`stored_experiment`.
"""

from __future__ import annotations

import copy
import os
import socket
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.config import Experiment, parse_experiment
from mlpsearch.engine import MLP, EpochRecord, TrainConfig
from mlpsearch.errors import ConfigError
from mlpsearch.space import slot_seed

# --- the stored attributes, declared once ----------------------------------------------------

# Trial user attributes. The runner enqueues SLOT and SEED with the trial (and a confirmation
# trial CONFIRM_OF and CONFIRM_SEED); liveness writes FAIL_REASON and INTERRUPTED when it stops a
# trial from outside. What the objective measures is named below but stored inside two tables,
# START and RESULT (store_start, store_end); older studies hold each name as an attribute of its
# own, and attrs() reads both layouts.
START = "start"  # {CONFIG, HOST, PID, BLAS_THREADS, BLAS_KERNEL, ENGINE, NUMPY, VAL_ROWS}
RESULT = "result"  # {SECONDS, BEST_EPOCH, CURVES, DEAD_FRACTION, PRUNE_REASON|FAIL_REASON,...}
SLOT = "slot"  # int: the trial's index in the study; its configuration and seed derive from it
SEED = "seed"  # int: the training seed (initial weights, minibatch order, dropout masks)
CONFIG = "config"  # {"model": MLP keyword arguments, "train": TrainConfig keyword arguments}
HOST = "host"  # str: the machine that trained it
PID = "pid"  # int: the worker process
BLAS_THREADS = "blas_threads"  # int: BLAS threads in force (bitwise reproduction needs them)
BLAS_KERNEL = "blas_kernel"  # str: BLAS library, version, kernel ("openblas 0.3.30 Haswell")
ENGINE = "engine"  # str: fingerprint of the engine's computing modules
NUMPY = "numpy_version"  # str: numpy.__version__
SECONDS = "seconds"  # float: training time
BEST_EPOCH = "best_epoch"  # int: 1-based epoch of the lowest validation error (the earliest)
# Derived from the curves and BEST_EPOCH by attrs() (stored by older studies):
EPOCHS = "epochs"  # int: epochs run
TRAIN_ERROR, VAL_ERROR = "train_error", "val_error"  # float: at the last epoch run
BEST_TRAIN_ERROR, BEST_VAL_ERROR = "best_train_error", "best_val_error"  # float: at it
CURVES = {  # lists, one value per epoch (None where a loss was not finite)
    name: f"curve_{name}"
    for name in ("train_error", "val_error", "train_loss", "val_loss", "batch_loss", "seconds")
}
VAL_ROWS = "val_rows"  # int: validation examples (for the binomial standard error)
# A confirmation trial (mlpsearch.confirm) re-trains a search trial's configuration on a fresh
# seed: the search trial's number and which fresh seed (1 .. seeds). Kept on a retry.
CONFIRM_OF, CONFIRM_SEED = "confirm_of", "confirm_seed"
# storage.fail_stale: why a trial was stopped from outside (Ctrl-C, a signal, a dead worker)
# and re-queued; such a trial is interrupted, not failed.
INTERRUPTED = "interrupted"
DEAD_FRACTION = "dead_fraction"  # list of float: dead units per hidden layer, last epoch
PRUNE_REASON = "prune_reason"  # str
FAIL_REASON = "fail_reason"  # str
TRACEBACK = "traceback"  # str: of a failure that is a bug
# liveness.fail_stale ends the fail reason of a trial it re-queued with this; its retry counts.
REQUEUED = "re-queued"
# Trial system attribute that Optuna's retry callback sets on a re-queued copy.
RETRY_OF = "failed_trial"  # int: the number of the failed trial it re-runs
# Study user attribute: the experiment the study was created from, as TOML.
EXPERIMENT_TOML = "experiment_toml"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Engine settings the readers show (the engine itself has defaults for the others).
SHOWN = (
    ("model", "activation"),
    ("model", "init_scale"),
    ("train", "learning_rate"),
    ("train", "seed"),
)


# --- writing (in the worker, through the objective) -------------------------------------------


def training_seed(trial: optuna.Trial, study_seed: int) -> int:
    """The trial's training seed: the one enqueued with it, else derived from its number
    (a trial the runner did not enqueue) and stored."""
    seed = trial.user_attrs.get(SEED)
    if seed is None:
        seed = slot_seed(study_seed, trial.number)
        trial.set_user_attr(SEED, seed)
    return seed


def store_start(
    trial: optuna.Trial,
    config: dict[str, Any],
    blas_threads: int,
    blas_kernel: str,
    engine: str,
    val_rows: int | None = None,
) -> None:
    """What the trial trains and where, before its first epoch (one write): the engine config,
    the host, the process, the BLAS threads and kernel, the engine's fingerprint, the numpy
    version, and how many validation examples measure it."""
    start = {
        CONFIG: config,
        HOST: socket.gethostname(),
        PID: os.getpid(),
        BLAS_THREADS: blas_threads,
        BLAS_KERNEL: blas_kernel,
        ENGINE: engine,
        NUMPY: np.__version__,
    }
    if val_rows is not None:
        start[VAL_ROWS] = val_rows
    trial.set_user_attr(START, start)


def store_end(
    trial: optuna.Trial,
    epochs: Sequence[EpochRecord],
    seconds: float,
    *,
    pruned: str | None = None,
    failure: str | None = None,
    traceback: str | None = None,
) -> None:
    """What the epochs run measured, however the trial ended, and why it was pruned or failed
    (``traceback`` for a failure that is a bug, not the trial's own): one write.

    Errors are kept exact (a re-run is compared with them bit for bit); losses are rounded to
    7 significant digits, times to 0.1 ms and dead fractions to 4 decimals.
    """
    result: dict[str, Any] = {SECONDS: round(seconds, 3)}
    if epochs:
        best = min(epochs, key=lambda r: (r.val_error, r.epoch))
        result[BEST_EPOCH] = best.epoch
        for name, key in CURVES.items():
            values = [getattr(r, name) for r in epochs]
            if name.endswith("loss"):
                values = [_round(v, "%.7g") for v in values]
            elif name == "seconds":
                values = [round(v, 4) for v in values]
            result[key] = values
        result[DEAD_FRACTION] = [round(d, 4) for d in epochs[-1].dead_fraction]
    if pruned is not None:
        result[PRUNE_REASON] = pruned
    if failure is not None:
        result[FAIL_REASON] = failure
    if traceback is not None:
        result[TRACEBACK] = traceback
    trial.set_user_attr(RESULT, _finite(result))


def store_failure(trial: optuna.Trial, reason: str, traceback: str | None = None) -> None:
    """Why the trial failed, where the objective could not say it (one write)."""
    result = {FAIL_REASON: reason} | ({TRACEBACK: traceback} if traceback is not None else {})
    trial.set_user_attr(RESULT, result)


def has_result(trial: optuna.Trial | FrozenTrial) -> bool:
    """Whether the trial's end (a result, or a fail reason) is stored."""
    stored = trial.user_attrs  # an optuna.Trial copies its attributes: read them once
    return RESULT in stored or FAIL_REASON in stored


def _round(value: float, form: str) -> float:
    return float(form % value) if value == value and abs(value) != float("inf") else value


def _finite(value: Any) -> Any:
    """JSON-safe values: NaN and infinities (a diverging loss) become None."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


# --- reading both layouts ----------------------------------------------------------------------


def attrs(trial: FrozenTrial | optuna.Trial) -> dict[str, Any]:
    """The trial's stored values by their names (CONFIG, SEED, BEST_VAL_ERROR, ...), whichever
    layout stored them: the START and RESULT tables opened, the values derived from the
    curves filled in, the attributes stored on their own (SLOT, SEED, a fail reason written
    by liveness) taking precedence. A START or RESULT that is not a table is left as it is
    (the record reports it)."""
    stored = trial.user_attrs
    flat: dict[str, Any] = {}
    for key in (START, RESULT):
        part = stored.get(key)
        if isinstance(part, dict):
            flat.update(part)
    result = stored.get(RESULT)
    if isinstance(result, dict):
        flat.update(_derived(result))
    flat.update(
        (k, v) for k, v in stored.items() if k not in (START, RESULT) or not isinstance(v, dict)
    )
    return flat


def _derived(result: dict[str, Any]) -> dict[str, Any]:
    """EPOCHS and the errors at the last and the best epoch, from the curves of a RESULT."""
    val, train = result.get(CURVES["val_error"]), result.get(CURVES["train_error"])
    if val is None and train is None and SECONDS in result:  # ended before its first epoch
        return {EPOCHS: 0}
    if not isinstance(val, list) or not isinstance(train, list) or len(val) != len(train):
        return {}
    out: dict[str, Any] = {EPOCHS: len(val)}
    if val:
        out |= {TRAIN_ERROR: train[-1], VAL_ERROR: val[-1]}
    best = result.get(BEST_EPOCH)
    if _is_int(best) and 1 <= best <= len(val):
        out |= {BEST_TRAIN_ERROR: train[best - 1], BEST_VAL_ERROR: val[best - 1]}
    return out


# --- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curves:
    """Per-epoch values of a trial, epoch 1 first (None where a loss was not finite)."""

    train_error: tuple[float | None, ...] = ()
    val_error: tuple[float | None, ...] = ()
    train_loss: tuple[float | None, ...] = ()
    val_loss: tuple[float | None, ...] = ()
    batch_loss: tuple[float | None, ...] = ()  # running mean over the epoch's minibatches
    seconds: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial, checked and typed. Build it with :meth:`from_frozen`.

    A complete trial always has ``config``, ``epochs``, ``best_epoch``, ``best_train_error``,
    ``best_val_error`` and its error curves; any other value may be None (absent: the trial
    ended before it was measured, or it was stored by an older version).
    """

    number: int
    state: TrialState
    value: float | None  # Optuna's objective value: the best validation error
    params: dict[str, Any]  # the sampled hyperparameters, by their Optuna names
    distributions: dict[str, BaseDistribution]
    config: dict[str, dict[str, Any]] | None  # {"model": MLP kwargs, "train": TrainConfig kwargs}
    slot: int | None = None
    seed: int | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    train_error: float | None = None  # at the last epoch
    val_error: float | None = None
    best_train_error: float | None = None  # at the best epoch
    best_val_error: float | None = None
    curves: Curves = field(default_factory=Curves)
    dead_fraction: tuple[float, ...] = ()  # per hidden layer, at the last epoch
    seconds: float | None = None
    started: datetime | None = None
    completed: datetime | None = None
    host: str | None = None
    pid: int | None = None
    blas_threads: int | None = None
    blas_kernel: str | None = None
    engine: str | None = None
    numpy: str | None = None
    reason: str = ""  # why it failed or was pruned
    traceback: str | None = None
    retry_of: int | None = None  # the failed trial this one re-runs
    val_rows: int | None = None  # validation examples behind its errors
    confirms: int | None = None  # a confirmation trial: the search trial it re-trains
    confirm_seed: int | None = None  # ... on its fresh seed number (1-based)
    interrupted: str | None = None  # why it was stopped from outside and re-queued

    @classmethod
    def from_frozen(cls, t: FrozenTrial, study: str | None = None) -> TrialRecord:
        """The record of ``t``; ConfigError (one line) for a missing or malformed value.

        ``study`` names the study in messages.
        """
        where = f"trial {t.number}" + (f" of study {study!r}" if study else "")
        read = _Reader(attrs(t), where)
        for key in (START, RESULT):
            read.table(key)
        complete = t.state == TrialState.COMPLETE
        curves = {
            name: read.numbers(key, complete and "error" in name) for name, key in CURVES.items()
        }
        return cls(
            number=t.number,
            state=t.state,
            value=t.value,
            params=dict(t.params),
            distributions=dict(t.distributions),
            config=read.config(CONFIG, complete),
            slot=read.integer(SLOT, low=0),
            seed=read.integer(SEED, low=0),
            epochs=read.integer(EPOCHS, complete, low=0),
            best_epoch=read.integer(BEST_EPOCH, complete, low=1),
            train_error=read.number(TRAIN_ERROR),
            val_error=read.number(VAL_ERROR),
            best_train_error=read.number(BEST_TRAIN_ERROR, complete),
            best_val_error=read.number(BEST_VAL_ERROR, complete),
            curves=Curves(**{k: tuple(v or ()) for k, v in curves.items()}),
            dead_fraction=tuple(read.numbers(DEAD_FRACTION, finite=True) or ()),
            seconds=read.number(SECONDS),
            started=t.datetime_start,
            completed=t.datetime_complete,
            host=read.text(HOST),
            pid=read.integer(PID),
            blas_threads=read.integer(BLAS_THREADS, low=1),
            blas_kernel=read.text(BLAS_KERNEL),
            engine=read.text(ENGINE),
            numpy=read.text(NUMPY),
            reason=read.text(FAIL_REASON) or read.text(PRUNE_REASON) or "",
            traceback=read.text(TRACEBACK),
            retry_of=_Reader(t.system_attrs, where).integer(RETRY_OF, low=0),
            val_rows=read.integer(VAL_ROWS, low=1),
            confirms=read.integer(CONFIRM_OF, low=0),
            confirm_seed=read.integer(CONFIRM_SEED, low=1),
            interrupted=read.text(INTERRUPTED),
        )

    # --- what the readers ask ----------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Complete, pruned or failed for good (a failed trial that was re-queued is not)."""
        return self.state in FINISHED and not self.requeued

    @property
    def requeued(self) -> bool:
        """Failed because its worker died, and re-run by a retry."""
        return _requeued(self.state, self.reason)

    @property
    def is_confirmation(self) -> bool:
        """A confirmation trial (:mod:`mlpsearch.confirm`), not a trial of the search."""
        return self.confirms is not None

    @property
    def units(self) -> tuple[int, ...]:
        """Hidden units per layer (empty without a config)."""
        return tuple(self.config["model"]["layer_sizes"][1:-1]) if self.config else ()

    @property
    def activation(self) -> str | None:
        """The activation of the hidden layers (the sampled one if no config was stored)."""
        if not self.config:
            value = self.params.get("activation")
            return value if isinstance(value, str) else None
        value = self.config["model"]["activation"]
        return value if isinstance(value, str) else ",".join(value)

    def setting(self, name: str) -> Any:
        """The engine setting ``name`` (``learning_rate``, ``init_scale``...), None if absent."""
        if not self.config:
            return None
        model, train = self.config["model"], self.config["train"]
        return model[name] if name in model else train.get(name)

    def describe(self) -> str:
        """``gelu 121-54-43, lr 0.0957``: the architecture and learning rate of the trial."""
        if not self.config:
            return ", ".join(f"{k} {_short(v)}" for k, v in sorted(self.params.items()))
        units = "-".join(str(u) for u in self.units)
        return f"{self.activation} {units}, lr {self.setting('learning_rate'):.3g}"


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class _Reader:
    """Typed reads of stored attributes; every problem is one ConfigError line."""

    def __init__(self, attrs: dict[str, Any], where: str) -> None:
        self.attrs, self.where = attrs, where

    def _get(self, key: str, required: bool) -> Any:
        value = self.attrs.get(key)
        if value is None and required:
            self.fail(key, "is missing" if key not in self.attrs else "is null")
        return value

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.where}: stored {key} {problem}")

    def integer(self, key: str, required: bool = False, low: int | None = None) -> int | None:
        value = self._get(key, required)
        if value is not None and (not _is_int(value) or (low is not None and value < low)):
            at_least = "" if low is None else f" >= {low}"
            self.fail(key, f"{_show(value)} is not an integer{at_least}")
        return value

    def number(self, key: str, required: bool = False) -> float | None:
        value = self._get(key, required)
        if value is not None and not _is_number(value):
            self.fail(key, f"{_show(value)} is not a number")
        return value

    def table(self, key: str) -> None:
        """A START or RESULT that did not open (:func:`attrs` leaves it in place)."""
        value = self.attrs.get(key)
        if value is not None:
            self.fail(key, f"{_show(value)} is not a table")

    def text(self, key: str) -> str | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"{_show(value)} is not a string")
        return value

    def numbers(self, key: str, required: bool = False, finite: bool = False) -> list | None:
        value = self._get(key, required)
        if value is None:
            return None
        ok = isinstance(value, list) and all(
            _is_number(v) or (v is None and not finite) for v in value
        )
        if not ok:
            self.fail(key, f"{_show(value)} is not a list of numbers")
        if required and not value:
            self.fail(key, "is empty")
        return value

    def config(self, key: str, required: bool) -> dict[str, dict[str, Any]] | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not (
            isinstance(value, dict)
            and set(value) == {"model", "train"}
            and all(isinstance(part, dict) for part in value.values())
        ):
            self.fail(key, f"{_show(value)} is not a table of model and train settings")
        sizes = value["model"].get("layer_sizes")
        if not (
            isinstance(sizes, list)
            and len(sizes) >= 2
            and all(_is_int(n) and n >= 1 for n in sizes)
        ):
            self.fail(key, f"model.layer_sizes {_show(sizes)}: not 2 or more positive integers")
        missing = [f"{part}.{name}" for part, name in SHOWN if name not in value[part]]
        if missing:
            self.fail(key, f"has no {', '.join(missing)}")
        try:  # the engine checks the other settings; a network of one unit per layer is free
            MLP(**{**value["model"], "layer_sizes": [1] * len(sizes)})
            TrainConfig.from_dict(value["train"])
        except (TypeError, ValueError) as err:
            self.fail(key, f"is not a valid engine config: {err}")
        return copy.deepcopy(value)  # the storage's cached trial is not ours to change


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- a study's trials ----------------------------------------------------------------------


def records(study: optuna.Study, states: Iterable[TrialState] | None = None) -> list[TrialRecord]:
    """The records of ``study``'s trials (those in ``states``), by number."""
    trials = study.get_trials(deepcopy=False, states=None if states is None else tuple(states))
    return [TrialRecord.from_frozen(t, study.study_name) for t in trials]


def best_first(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The complete trials of the search (confirmations left out), lowest validation error
    first (ties: lower number)."""
    done = [
        r
        for r in trials
        if r.state == TrialState.COMPLETE and r.value is not None and not r.is_confirmation
    ]
    return sorted(done, key=lambda r: (r.value, r.number))


def best(source: optuna.Study | Iterable[TrialRecord]) -> TrialRecord | None:
    """The study's best search trial: the confirmed configuration with the lowest mean over its
    seeds (:func:`mlpsearch.confirm.best`), else the complete trial with the lowest validation
    error (the lower number on a tie)."""
    from mlpsearch import confirm  # it reads records: imported here, not at the top

    if isinstance(source, optuna.Study):
        source = records(source, (TrialState.COMPLETE,))
    source = list(source)
    found = confirm.best(source)
    if found is None:
        return None
    return next(r for r in source if r.number == found.trial)


def pick(study: optuna.Study, number: int | None = None, *, complete: bool = True) -> TrialRecord:
    """Trial ``number`` of ``study`` (default: the best), as a record.

    ``complete``: it must be complete (else it must at least have a learning curve). Anything
    else is a ConfigError, one line: no such trial, not complete, nothing to show.
    """
    name = study.study_name
    if number is None:
        found = best(study)
        if found is None:
            raise ConfigError(f"study {name!r} has no complete trial yet")
        return found
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        known = f"0 to {max(by_number)}" if by_number else "none"
        raise ConfigError(f"trial {number} is not in study {name!r} (its trials: {known})")
    record = TrialRecord.from_frozen(by_number[number], name)
    state = record.state.name.lower()
    if complete and record.state != TrialState.COMPLETE:
        raise ConfigError(f"trial {number} of study {name!r} is {state}, not complete")
    if not record.curves.val_error:
        raise ConfigError(f"trial {number} of study {name!r} has no learning curve ({state})")
    return record


def count_finished(study: optuna.Study) -> int:
    """Search trials that are complete, pruned, or failed for good (not re-queued).

    Reads only the state and the fail reason, so that a run can always say how far it got.
    """
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    return sum(
        # a re-queued trial's reason is written by liveness, on its own
        not _requeued(t.state, str(t.user_attrs.get(FAIL_REASON, "")))
        and CONFIRM_OF not in t.user_attrs  # confirmations are not trials of the search
        for t in trials
    )


def _requeued(state: TrialState, reason: str) -> bool:
    return state == TrialState.FAIL and reason.endswith(REQUEUED)


def stored_experiment(study: optuna.Study, *, required: bool = True) -> Experiment | None:
    """The experiment the study was created from, validated.

    ConfigError (one line) if it is broken, or missing when ``required``; else None if missing.
    """
    text = study.user_attrs.get(EXPERIMENT_TOML)
    name = study.study_name
    if text is None and not required:
        return None
    if not isinstance(text, str):
        raise ConfigError(
            f"study {name!r} holds no experiment (it was not created by mlpsearch run)"
        )
    try:
        return parse_experiment(tomllib.loads(text), source=f"study {name}")
    except (tomllib.TOMLDecodeError, ConfigError) as err:
        raise ConfigError(f"study {name!r}: its stored experiment: {err}") from None


def experiment_text(study: optuna.Study) -> str:
    """The stored experiment as written (TOML), or "" if the study holds none."""
    text = study.user_attrs.get(EXPERIMENT_TOML)
    return text if isinstance(text, str) else ""
