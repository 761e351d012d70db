"""Training one configuration outside a study: ``mlpsearch train`` (a ``best.toml``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlpsearch.config import Experiment, check_memory_for_data
from mlpsearch.data import load_data
from mlpsearch.engine import MLP, EpochRecord, History, TrainConfig, train
from mlpsearch.engine.data import Dataset
from mlpsearch.errors import ConfigError
from mlpsearch.space import suggest, trial_config


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


def fit(
    model: MLP,
    config: dict[str, Any],
    data: Dataset,
    callback: Callable[[EpochRecord], bool | None] | None = None,
) -> History:
    """Train ``model`` with ``config["train"]`` on ``data``'s training and validation parts."""
    return train(
        model,
        data.X_train,
        data.y_train,
        data.X_val,
        data.y_val,
        TrainConfig(**config["train"]),
        callback=callback,
    )


def training_seed(exp: Experiment, seed: int | None = None) -> int:
    """The training seed of a fixed experiment: ``seed`` if given, else its ``[train] seed``
    (a ``best.toml`` holds the trial's), else its ``[study] seed``."""
    if seed is not None:
        return seed
    return exp.train.get("seed", exp.study.seed)


def train_experiment(
    exp: Experiment, seed: int | None = None, echo: Callable[[str], None] | None = None
) -> Run:
    """Train the single configuration of ``exp`` (every hyperparameter fixed) with
    :func:`training_seed`; ConfigError if a hyperparameter is searched."""
    data = load_data(exp)
    check_memory_for_data(exp, data.n_features, data.n_classes, len(data.y_train))
    config = fixed_config(exp, data, training_seed(exp, seed))
    model = MLP(**config["model"])

    def on_epoch(r: EpochRecord) -> None:
        if echo is not None:
            echo(
                f"epoch {r.epoch:>3}  train loss {r.train_loss:.4f}  train error "
                f"{r.train_error:.2%}  val error {r.val_error:.2%}  {r.seconds:.2f}s"
            )

    return Run(model, fit(model, config, data, on_epoch), data, config)


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
