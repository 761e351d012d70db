"""Every hyperparameter's rule, declared once, next to the engine it governs.

A :class:`Rule` gives a hyperparameter's type, the values it allows (an interval of numbers, or
the names of a registry: ``ACTIVATIONS``, ``INITIALIZERS``, ``OPTIMIZERS``, ``SCHEDULES``), its
default, and the part of the engine that takes it: ``"model"`` (an argument of ``MLP``) or
``"train"`` (a field of ``TrainConfig``). ``MLP`` and ``TrainConfig`` validate their arguments
against :data:`RULES`, and the search layer derives its experiment schema from the same table
(as scikit-learn estimators declare ``_parameter_constraints`` once and check every entry point
against them). A bound, a choice list or a default is written here and nowhere else; a choice
list is the registry itself, so a new activation is allowed everywhere as soon as it is
registered.

``hidden_layers`` and ``units`` are the shape of ``MLP``'s ``layer_sizes``: how many hidden
layers, and the width of each.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .activations import ACTIVATIONS
from .initializers import INITIALIZERS
from .optimizers import OPTIMIZERS, SCHEDULES

__all__ = ["RULES", "Bounds", "Rule", "did_you_mean"]

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Bounds:
    """The interval a number must lie in; each end closed unless said open."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def __str__(self) -> str:
        """``"1 <= value <= 8"``, ``"0 <= value < 1"``, ``"value > 0"``: infinite ends left out."""
        low = "" if self.low == -math.inf else _num(self.low)
        high = "" if self.high == math.inf else _num(self.high)
        below = "<" if self.high_open else "<="
        if low and high:
            return f"{low} {'<' if self.low_open else '<='} value {below} {high}"
        if low:
            return f"value {'>' if self.low_open else '>='} {low}"
        return f"value {below} {high}" if high else "any finite number"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e16 else repr(v)


@dataclass(frozen=True, eq=False)
class Rule:
    """What one hyperparameter allows.

    Attributes
    ----------
    type : int, float or str (an int is accepted where a float is expected)
    default : the value when none is given (None: off, for an ``optional`` rule)
    part : "model" (an ``MLP`` argument) or "train" (a ``TrainConfig`` field)
    bounds : the interval a number must lie in (numbers are always finite)
    registry : for a string, the registry whose names are the choices
    optional : None is allowed too, and means "off"
    """

    name: str
    type: type
    default: Any
    part: str
    bounds: Bounds | None = None
    registry: Mapping[str, Any] | None = None
    optional: bool = False
    doc: str = ""

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed names (empty for a number): the registry's, as it is now."""
        return tuple(self.registry) if self.registry is not None else ()

    def problem(self, value: Any, off: str = "None") -> str | None:
        """Why ``value`` is not allowed (one line, naming the value), or None when it is.

        ``off`` is how the message names the "off" value of an ``optional`` rule.
        """
        if value is None and self.optional:
            return None
        if self.type is str:
            if not isinstance(value, str):
                return f"{value!r} is not a string"
            if value not in self.choices:
                hint = did_you_mean(value, self.choices)
                return f"{value!r} is not allowed{hint}; allowed: {', '.join(self.choices)}"
            return None
        ok = _is_int(value) if self.type is int else _is_real(value)
        if not ok:
            return f"{value!r} is not {_TYPE_NAMES[self.type]}"
        if isinstance(value, float | np.floating) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if self.bounds is not None and value not in self.bounds:
            either = f", or {off} (off)" if self.optional else ""
            return f"{_plain(value)} is out of range; allowed: {self.bounds}{either}"
        return None

    def check(self, value: Any, where: str, off: str = "None") -> Any:
        """``value`` as a plain Python value of the rule's type, or ValueError ``"where: why"``."""
        why = self.problem(value, off)
        if why is not None:
            raise ValueError(f"{where}: {why}")
        if value is None or self.type is str:
            return value
        return self.type(value)  # numpy scalars -> int / float (JSON-able)


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def did_you_mean(word: str, options: Any) -> str:
    """``" (did you mean 'relu'?)"`` for the option closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.name: r for r in rules}


_POSITIVE = Bounds(0.0, low_open=True)
_NON_NEGATIVE = Bounds(0.0)
_UNIT = Bounds(0.0, 1.0, high_open=True)  # [0, 1)

RULES: dict[str, Rule] = _rules(
    # --- the network (MLP) ---
    Rule("hidden_layers", int, 1, "model", Bounds(1, 8), doc="hidden layers"),
    Rule("units", int, 64, "model", Bounds(1, 65536), doc="units of a hidden layer"),
    Rule("activation", str, "relu", "model", registry=ACTIVATIONS, doc="hidden activation"),
    Rule("init", str, "he", "model", registry=INITIALIZERS, doc="weight initializer"),
    Rule("init_scale", float, 1.0, "model", _POSITIVE, doc="multiplies the init's std"),
    Rule("bias_init", float, 0.0, "model", Bounds(), doc="initial value of every bias"),
    # --- the training (TrainConfig) ---
    Rule("epochs", int, 20, "train", Bounds(1, 100_000), doc="passes over the training set"),
    Rule("batch_size", int, 64, "train", Bounds(1, 1_000_000), doc="rows per minibatch"),
    Rule("optimizer", str, "momentum", "train", registry=OPTIMIZERS, doc="update rule"),
    Rule("learning_rate", float, 0.05, "train", _POSITIVE, doc="base learning rate"),
    Rule("momentum", float, 0.9, "train", _UNIT, doc="of momentum and nesterov"),
    Rule("beta1", float, 0.9, "train", _UNIT, doc="Adam's first-moment decay"),
    Rule("beta2", float, 0.999, "train", _UNIT, doc="Adam's second-moment decay"),
    Rule("eps", float, 1e-8, "train", _POSITIVE, doc="Adam's denominator floor"),
    Rule("schedule", str, "constant", "train", registry=SCHEDULES, doc="learning-rate schedule"),
    Rule("step_size", int, 10, "train", Bounds(1), doc="epochs between step decays"),
    Rule("gamma", float, 0.1, "train", Bounds(0.0, 1.0, low_open=True), doc="step decay"),
    Rule("weight_decay", float, 0.0, "train", _NON_NEGATIVE, doc="L2 on weights only"),
    Rule("dropout", float, 0.0, "train", _UNIT, doc="probability of dropping a hidden unit"),
    Rule(
        "label_smoothing",
        float,
        0.0,
        "train",
        _UNIT,
        doc="share of each target spread evenly over the classes",
    ),
    Rule(
        "patience",
        int,
        None,
        "train",
        Bounds(1),
        optional=True,
        doc="epochs without a better val_error before stopping (None: off)",
    ),
    Rule("seed", int, 0, "train", _NON_NEGATIVE, doc="minibatch order, dropout (and weights)"),
    Rule(
        "max_loss_factor",
        float,
        100.0,
        "train",
        Bounds(1.0, low_open=True),
        doc="a loss above this times the first one counts as divergence",
    ),
)
