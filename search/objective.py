"""The Optuna objective: one trial's hyperparameters in, one trained network's error out."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import optuna

import mlpsearch.engine as engine
from mlpsearch.engine import MLP, Diverged, EpochRecord, TrainConfig, train
from mlpsearch.engine.data import Dataset
from mlpsearch.config import Experiment
from mlpsearch.space import slot_seed, suggest, trial_config
from mlpsearch.threads import blas_kernel, blas_threads


class Objective:
    """Trains the network a trial describes, reporting every epoch so pruners can act.

    Returns the best validation error over the epochs run. Everything a report needs (curves,
    errors, dead units, seed, the full engine config) is stored as trial user attributes.
    """

    def __init__(self, exp: Experiment, data: Dataset) -> None:
        self.exp, self.data = exp, data
        self.blas_threads = blas_threads()  # the worker's limit, set before it built us
        self.blas_kernel = blas_kernel()

    def __call__(self, trial: optuna.Trial, heartbeat: Any = None) -> float:
        seed = trial.user_attrs.get("seed")
        if seed is None:  # a trial that was not enqueued by the runner
            seed = slot_seed(self.exp.study.seed, trial.number)
            trial.set_user_attr("seed", seed)
        values = suggest(trial, self.exp.space)
        config = trial_config(self.exp, values, seed, self.data.n_features, self.data.n_classes)
        trial.set_user_attr("config", config)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("blas_threads", self.blas_threads)
        trial.set_user_attr("blas_kernel", self.blas_kernel)
        trial.set_user_attr("numpy_version", np.__version__)
        trial.set_user_attr("engine", engine_fingerprint())

        records: list[EpochRecord] = []
        started = time.perf_counter()

        def on_epoch(record: EpochRecord) -> None:
            records.append(record)
            trial.report(record.val_error, record.epoch)
            if heartbeat is not None:
                heartbeat.beat()
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {record.epoch}: validation error {record.val_error:.4f}"
                )

        try:
            model = MLP(**config["model"])
            history = train(
                model,
                self.data.X_train,
                self.data.y_train,
                self.data.X_val,
                self.data.y_val,
                TrainConfig(**config["train"]),
                callback=on_epoch,
            )
        except optuna.TrialPruned as err:
            _store_results(trial, records, time.perf_counter() - started)
            trial.set_user_attr("prune_reason", str(err))
            raise
        except Diverged as err:
            _store_results(trial, records, time.perf_counter() - started)
            trial.set_user_attr("fail_reason", f"diverged: {err}")
            raise
        except Exception as err:
            _store_results(trial, records, time.perf_counter() - started)
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            trial.set_user_attr("traceback", traceback.format_exc())
            raise
        _store_results(trial, history.records, time.perf_counter() - started)
        return float(history.best_val_error)


def _store_results(trial: optuna.Trial, records: list[EpochRecord], seconds: float) -> None:
    attrs: dict[str, Any] = {"epochs": len(records), "seconds": round(seconds, 3)}
    if records:
        best = min(records, key=lambda r: (r.val_error, r.epoch))
        last = records[-1]
        attrs |= {
            "train_error": last.train_error,
            "val_error": last.val_error,
            "best_epoch": best.epoch,
            "best_train_error": best.train_error,
            "best_val_error": best.val_error,
            "curve_train_loss": [r.train_loss for r in records],
            "curve_val_loss": [r.val_loss for r in records],
            "curve_train_error": [r.train_error for r in records],
            "curve_val_error": [r.val_error for r in records],
            "curve_seconds": [r.seconds for r in records],
            "dead_fraction": list(last.dead_fraction),
        }
    for key, value in attrs.items():
        trial.set_user_attr(key, _finite(value))


def _finite(value: Any) -> Any:
    """JSON-safe values: NaN and infinities (a diverging loss) become None."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@functools.cache
def engine_fingerprint() -> str:
    """A short hash of the engine's source: a re-run on another engine may differ."""
    digest = hashlib.sha256()
    for path in sorted(Path(engine.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
