"""The Optuna objective: one trial's hyperparameters in, one trained network's error out."""

from __future__ import annotations

import functools
import hashlib
import time
import traceback
from pathlib import Path
from typing import Any

import optuna

import mlpsearch.engine as engine
from mlpsearch import trials
from mlpsearch.config import Experiment
from mlpsearch.engine import MLP, Diverged, EpochRecord, TrainConfig, train
from mlpsearch.engine.data import Dataset
from mlpsearch.space import suggest, trial_config
from mlpsearch.threads import blas_kernel, blas_threads


class Objective:
    """Trains the network a trial describes, reporting every epoch so pruners can act.

    Returns the best validation error over the epochs run. Everything a report needs (curves,
    errors, dead units, seed, the full engine config) is stored on the trial by
    :mod:`mlpsearch.trials`, which also reads it back.
    """

    def __init__(self, exp: Experiment, data: Dataset) -> None:
        self.exp, self.data = exp, data
        self.blas_threads = blas_threads()  # the worker's limit, set before it built us
        self.blas_kernel = blas_kernel()

    def __call__(self, trial: optuna.Trial, heartbeat: Any = None) -> float:
        seed = trials.training_seed(trial, self.exp.study.seed)
        values = suggest(trial, self.exp.space)
        config = trial_config(self.exp, values, seed, self.data.n_features, self.data.n_classes)
        trials.store_start(
            trial,
            config,
            self.blas_threads,
            self.blas_kernel,
            engine_fingerprint(),
            len(self.data.y_val),
        )
        # A confirmation trial (mlpsearch.confirm) measures a configuration on a fresh seed:
        # it runs to the end, as the trial it confirms did.
        prunable = trials.CONFIRM_OF not in trial.user_attrs

        records: list[EpochRecord] = []
        started = time.perf_counter()

        def on_epoch(record: EpochRecord) -> None:
            records.append(record)
            trial.report(record.val_error, record.epoch)
            if heartbeat is not None:
                heartbeat.beat()
            if prunable and trial.should_prune():
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
            trials.store_epochs(trial, records, time.perf_counter() - started)
            trials.store_pruned(trial, str(err))
            raise
        except Diverged as err:
            trials.store_epochs(trial, records, time.perf_counter() - started)
            trials.store_failure(trial, f"diverged: {err}")
            raise
        except Exception as err:
            trials.store_epochs(trial, records, time.perf_counter() - started)
            trials.store_failure(trial, f"{type(err).__name__}: {err}", traceback.format_exc())
            raise
        trials.store_epochs(trial, history.records, time.perf_counter() - started)
        return float(history.best_val_error)


# Engine modules that do file chores, not computation: editing them cannot change a result.
# (The data loaders, in the data/ subpackage, are left out as well.)
NOT_COMPUTING = ("files.py",)


@functools.cache
def engine_fingerprint() -> str:
    """A short hash of the engine's computing modules: a re-run on another engine may differ."""
    return fingerprint(Path(engine.__file__).parent)


def fingerprint(folder: Path) -> str:
    """A short hash of the modules in ``folder`` (not its subfolders) but :data:`NOT_COMPUTING`."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        if path.name not in NOT_COMPUTING:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
