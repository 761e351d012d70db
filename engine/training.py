"""Training: the configuration, the per-epoch record, the history, and the loop.

What an epoch records
---------------------
- ``train_loss`` / ``train_error``: one evaluation pass (no dropout) after the epoch's last
  update over the training part, or over a fixed subset of ``TRAIN_EVAL_ROWS`` of its rows
  where it has more (the same rows every epoch and every trial: they depend on the number of
  rows alone). This is the model's error on data it was trained on, comparable with
  ``val_error``; the cross-entropy is without the L2 term.
- ``batch_loss`` / ``batch_error``: running averages over the epoch's minibatches as they were
  trained (weights changing, dropout on; the loss against label-smoothed targets where
  ``label_smoothing`` is set). Cheap, but not the model's error: kept for diagnosing the
  optimisation itself.
- ``val_loss`` / ``val_error`` / ``dead_fraction``: one evaluation pass over the validation set
  (no dropout) after the epoch's last update. A hidden unit is dead when its output is 0 for every
  validation row.
- ``seconds``: wall-clock time of the epoch including the evaluation pass.

Determinism: minibatch order and dropout masks come from generators seeded by ``config.seed``
(one ``SeedSequence`` spawning two streams), so the same model seed, data, configuration and BLAS
thread count give bitwise-identical weights and history (``seconds`` aside).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .hyperparameters import RULES
from .network import _EVAL_ROWS, MLP
from .optimizers import SCHEDULES, Momentum, make_optimizer

__all__ = [
    "TRAIN_EVAL_ROWS",
    "Diverged",
    "EpochRecord",
    "History",
    "TrainConfig",
    "Trainer",
    "train",
]

# Rows of the training part evaluated each epoch for train_loss / train_error: enough for a
# standard error below 0.3 points at 10% error, and about 7% of a Fashion-MNIST epoch.
TRAIN_EVAL_ROWS = 10_000
_TRAIN_EVAL_SEED = 20_240_601  # fixed: every trial is evaluated on the same rows


_D = {name: rule.default for name, rule in RULES.items()}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Validated when built against ``engine.hyperparameters.RULES`` (where every
    bound and default is declared): a bad value raises ValueError naming the field and what is
    allowed. ``from_dict``/``to_dict`` convert to and from JSON-able dictionaries."""

    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    optimizer: str = _D["optimizer"]
    learning_rate: float = _D["learning_rate"]
    momentum: float = _D["momentum"]
    beta1: float = _D["beta1"]
    beta2: float = _D["beta2"]
    eps: float = _D["eps"]
    schedule: str = _D["schedule"]
    step_size: int = _D["step_size"]  # epochs between step decays
    gamma: float = _D["gamma"]  # step decay factor
    weight_decay: float = _D["weight_decay"]  # L2 on weights only: loss += wd / 2 * sum(W**2)
    dropout: float = _D["dropout"]  # probability of dropping a hidden unit (inverted dropout)
    label_smoothing: float = _D["label_smoothing"]  # target (1 - e) onehot + e / classes
    patience: int | None = _D["patience"]  # epochs without a better val_error; None = off
    seed: int = _D["seed"]  # minibatch order and dropout masks
    # A minibatch loss above max_loss_factor * (the first minibatch's loss, at least log(classes))
    # counts as divergence, as does any non-finite loss.
    max_loss_factor: float = _D["max_loss_factor"]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = RULES[f.name].check(getattr(self, f.name), f"TrainConfig.{f.name}")
            object.__setattr__(self, f.name, value)  # numpy scalars -> int / float (JSON-able)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dictionary; unknown keys raise ValueError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        """JSON-able dictionary of every field."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch measured (see the module docstring for how)."""

    epoch: int  # 1-based
    train_loss: float
    train_error: float
    batch_loss: float
    batch_error: float
    val_loss: float
    val_error: float
    seconds: float
    learning_rate: float
    dead_fraction: tuple[float, ...]  # one per hidden layer


@dataclass
class History:
    """Every epoch's record, the best epoch (lowest val_error, earliest on ties) and why training
    stopped: "completed", "early_stopping" or "callback"."""

    records: list[EpochRecord] = field(default_factory=list)
    stop_reason: str = "completed"

    @property
    def best_epoch(self) -> int | None:
        if not self.records:
            return None
        return min(self.records, key=lambda r: (r.val_error, r.epoch)).epoch

    @property
    def best_val_error(self) -> float | None:
        best = self.best_epoch
        return None if best is None else self.records[best - 1].val_error

    def _column(self, name: str) -> list:
        return [getattr(r, name) for r in self.records]

    @property
    def train_loss(self) -> list[float]:
        return self._column("train_loss")

    @property
    def train_error(self) -> list[float]:
        return self._column("train_error")

    @property
    def val_loss(self) -> list[float]:
        return self._column("val_loss")

    @property
    def val_error(self) -> list[float]:
        return self._column("val_error")

    @property
    def seconds(self) -> list[float]:
        return self._column("seconds")

    def to_dict(self) -> dict:
        """JSON-able: one list per EpochRecord field, plus best_epoch, best_val_error and
        stop_reason."""
        out: dict = {f.name: self._column(f.name) for f in dataclasses.fields(EpochRecord)}
        out["dead_fraction"] = [list(d) for d in out["dead_fraction"]]
        out["best_epoch"] = self.best_epoch
        out["best_val_error"] = self.best_val_error
        out["stop_reason"] = self.stop_reason
        return out


class Diverged(Exception):
    """Training produced a non-finite or exploding loss."""

    def __init__(self, epoch: int, last_finite_loss: float | None, loss: float) -> None:
        self.epoch = epoch
        self.last_finite_loss = last_finite_loss
        self.loss = loss
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.4g}"
        super().__init__(
            f"training diverged in epoch {epoch}: loss {loss:.4g} (last finite loss {last})"
        )


def _check_data(model: MLP, X, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != model.layer_sizes[0] or X.shape[0] == 0:
        raise ValueError(
            f"X_{what} must have shape (n > 0, {model.layer_sizes[0]}), got {X.shape}"
        )
    if X.dtype != model.dtype:
        X = X.astype(model.dtype)  # once, so that minibatches are gathered without casting
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_{what} must be {X.shape[0]} integer labels, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= model.layer_sizes[-1]:
        raise ValueError(f"y_{what} labels must lie in [0, {model.layer_sizes[-1]})")
    return X, y.astype(np.intp, copy=False)


class Trainer:
    """Minibatch training of one model on one training set, one epoch at a time.

    ``train`` drives it; the benchmark calls ``run_epoch`` directly to time the training pass
    alone. Everything the batch loop needs is set up here, once.
    """

    def __init__(self, model: MLP, X_train: np.ndarray, y_train: np.ndarray, config: TrainConfig):
        self.model = model
        self.config = cfg = config
        self.X, self.y = _check_data(model, X_train, y_train, "train")
        n = self.X.shape[0]
        self.batch_size = min(cfg.batch_size, n)
        order, drop = np.random.SeedSequence(cfg.seed).spawn(2)
        self.order_rng = np.random.default_rng(order)  # minibatch order
        self.dropout_rng = np.random.default_rng(drop)  # dropout masks
        self.perm = np.arange(n, dtype=np.intp)
        self.optimizer = make_optimizer(
            cfg.optimizer,
            [model.params],
            momentum=cfg.momentum,
            beta1=cfg.beta1,
            beta2=cfg.beta2,
            eps=cfg.eps,
        )
        # The SGD family takes gradients already multiplied by the learning rate (one pass fewer).
        self.prescaled = isinstance(self.optimizer, Momentum)
        self.ws = model._workspace(self.batch_size)
        if cfg.dropout:
            self.ws.ensure_dropout()
        self.tail = self.ws.rows(n % self.batch_size) if n % self.batch_size else None
        self.X_eval, self.y_eval = _eval_rows(self.X, self.y)
        self.last_finite_loss: float | None = None
        self._limit = math.inf

    def learning_rate(self, epoch: int) -> float:
        """The scheduled learning rate of a 1-based epoch."""
        cfg = self.config
        return SCHEDULES[cfg.schedule](
            cfg.learning_rate, epoch, epochs=cfg.epochs, step_size=cfg.step_size, gamma=cfg.gamma
        )

    def run_epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over the training set in a fresh random order.

        Returns (mean minibatch cross-entropy, fraction of misclassified rows, learning rate),
        both averages taken over the epoch's minibatches as they were trained.
        Raises Diverged on a non-finite or exploding minibatch loss.
        """
        cfg, model = self.config, self.model
        X, y, perm, ws, tail = self.X, self.y, self.perm, self.ws, self.tail
        n, bs = X.shape[0], self.batch_size
        lr = self.learning_rate(epoch)
        scale = lr if self.prescaled else 1.0
        grads = [model.grads]
        step = self.optimizer.step_prescaled if self.prescaled else self.optimizer.step
        # one forward and backward pass of a minibatch, with this epoch's settings bound once
        fb = functools.partial(
            model._forward_backward,
            weight_decay=cfg.weight_decay,
            dropout=cfg.dropout,
            rng=self.dropout_rng,
            scale=scale,
            label_smoothing=cfg.label_smoothing,
        )
        limit = self._limit
        self.order_rng.shuffle(perm)
        loss_total, errors = 0.0, 0
        # Overflow and invalid-value warnings are expected once training diverges; divergence is
        # reported by the Diverged exception below instead.
        with np.errstate(over="ignore", invalid="ignore"):
            for s in range(0, n, bs):
                idx = perm[s : s + bs]
                v = ws if idx.shape[0] == bs else tail
                # mode="clip": the indices are valid by construction, and the default "raise"
                # would copy every minibatch through a temporary buffer.
                np.take(X, idx, axis=0, out=v.x, mode="clip")
                np.take(y, idx, out=v.y, mode="clip")
                loss_sum, err = fb(v, v.x, v.y)
                loss = loss_sum / idx.shape[0]
                if not loss <= limit:  # also catches NaN
                    raise Diverged(epoch, self.last_finite_loss, loss)
                if limit == math.inf:
                    limit = cfg.max_loss_factor * max(loss, math.log(model.layer_sizes[-1]))
                    self._limit = limit
                self.last_finite_loss = loss
                loss_total += loss_sum
                errors += err
                if self.prescaled:
                    step(grads)
                else:
                    step(grads, lr)
        return loss_total / n, errors / n, lr

    def evaluate_train(self) -> tuple[float, float]:
        """(mean cross-entropy, error rate) of the model as it is now, in evaluation mode (no
        dropout), on the training rows chosen once in ``__init__``. Reuses the model's
        evaluation buffers: nothing array-sized is allocated."""
        model, X, y = self.model, self.X_eval, self.y_eval
        n = X.shape[0]
        cap = min(n, _EVAL_ROWS)
        ws = model._workspace(cap)
        loss_sum, errors = 0.0, 0
        with np.errstate(over="ignore", invalid="ignore"):
            for s in range(0, n, cap):
                v = ws.rows(min(cap, n - s))
                x = X[s : s + v.capacity]  # contiguous rows of the model's dtype: no copy
                np.copyto(v.y, y[s : s + v.capacity])
                ls, e = v.loss(model._forward_ws(v, x), v.y, 1.0)
                loss_sum += ls
                errors += e
        return loss_sum / n, errors / n


def _eval_rows(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training rows evaluated each epoch: all of them, or a fixed sample of
    TRAIN_EVAL_ROWS in their original order (copied once, contiguous)."""
    n = X.shape[0]
    if n <= TRAIN_EVAL_ROWS:
        return X, y
    rows = np.random.default_rng(_TRAIN_EVAL_SEED).choice(n, TRAIN_EVAL_ROWS, replace=False)
    rows.sort()
    return np.ascontiguousarray(X[rows]), y[rows]


def train(
    model: MLP,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    callback: Callable[[EpochRecord], bool | None] | None = None,
) -> History:
    """Train ``model`` in place and return its History.

    Parameters
    ----------
    model : MLP, updated in place; it keeps its final weights (History names the best epoch)
    X_train : (n, n_in) features; y_train : (n,) integer labels
    X_val : (m, n_in); y_val : (m,)
    config : TrainConfig
    callback : called with each EpochRecord; returning True stops training (stop_reason
        "callback"); exceptions it raises propagate unchanged.

    Raises
    ------
    Diverged
        on a non-finite or exploding loss, with the epoch and the last finite loss.
    """
    trainer = Trainer(model, X_train, y_train, config)
    X_val, y_val = _check_data(model, X_val, y_val, "val")
    history = History()
    best_error, since_best = math.inf, 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        batch_loss, batch_error, lr = trainer.run_epoch(epoch)
        train_loss, train_error = trainer.evaluate_train()
        with np.errstate(over="ignore", invalid="ignore"):
            val_loss, val_error, dead = model.evaluate(X_val, y_val)
        if not math.isfinite(val_loss):
            raise Diverged(epoch, trainer.last_finite_loss, val_loss)
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            train_error=train_error,
            batch_loss=batch_loss,
            batch_error=batch_error,
            val_loss=val_loss,
            val_error=val_error,
            seconds=time.perf_counter() - t0,
            learning_rate=lr,
            dead_fraction=tuple(dead),
        )
        history.records.append(record)
        if callback is not None and callback(record):
            history.stop_reason = "callback"
            break
        if val_error < best_error:
            best_error, since_best = val_error, 0
        else:
            since_best += 1
            if config.patience is not None and since_best >= config.patience:
                history.stop_reason = "early_stopping"
                break
    return history
