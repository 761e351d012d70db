"""Training one configuration outside a study: ``mlpsearch train`` and re-runs of a trial."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import MLP, EpochRecord, History, TrainConfig, train
from engine.data import Dataset
from search.config import ConfigError, Experiment
from search.data import load_data
from search.space import suggest, trial_config


@dataclass
class Run:
    model: MLP
    history: History
    data: Dataset
    config: dict[str, Any]


def fixed_config(exp: Experiment, data: Dataset, seed: int) -> dict[str, Any]:
    """The engine config of an experiment whose every hyperparameter is fixed."""
    values = suggest(_FixedTrial(exp.source), exp.space)
    return trial_config(exp, values, seed, data.n_features, data.n_classes)


def train_config(
    config: dict[str, Any],
    data: Dataset,
    *,
    echo: Callable[[str], None] | None = None,
    final: bool = False,
) -> Run:
    """Train ``config`` (``{"model": ..., "train": ...}``) on ``data``.

    With ``final``, train on train + validation and evaluate on the test part (validation
    columns of the history then describe the test part: the only place it is used).
    """
    import numpy as np

    model = MLP(**config["model"])
    X_train, y_train, X_val, y_val = data.X_train, data.y_train, data.X_val, data.y_val
    if final:
        X_train = np.concatenate([data.X_train, data.X_val])
        y_train = np.concatenate([data.y_train, data.y_val])
        X_val, y_val = data.X_test, data.y_test
        # early stopping on the test set would be selection on it: train the epochs as set
        config = {**config, "train": {**config["train"], "patience": None}}

    def on_epoch(r: EpochRecord) -> None:
        if echo is not None:
            name = "test" if final else "val"
            echo(
                f"epoch {r.epoch:>3}  train loss {r.train_loss:.4f}  train error "
                f"{r.train_error:.2%}  {name} error {r.val_error:.2%}  {r.seconds:.2f}s"
            )

    history = train(
        model, X_train, y_train, X_val, y_val, TrainConfig(**config["train"]), callback=on_epoch
    )
    return Run(model, history, data, config)


def train_experiment(
    exp: Experiment, seed: int = 0, echo: Callable[[str], None] | None = None
) -> Run:
    data = load_data(exp)
    return train_config(fixed_config(exp, data, seed), data, echo=echo)


class _FixedTrial:
    """Stands in for an Optuna trial when every value must be fixed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _searched(self, name: str, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(
            f"{self.source}: space.{name} is searched, but 'mlpsearch train' needs fixed "
            "values; use 'mlpsearch run' for a search"
        )

    suggest_int = suggest_float = suggest_categorical = _searched
