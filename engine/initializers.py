"""Weight initializers, keyed by the names the search uses.

Each is ``init(fan_in, fan_out, rng, *, scale=1.0, dtype="float32") -> (fan_in, fan_out) array``
drawing from a zero-mean normal whose standard deviation is ``scale`` times

- ``he``     (Kaiming normal, for ReLU-like units): sqrt(2 / fan_in)
- ``glorot`` (Xavier normal, for tanh/sigmoid):    sqrt(2 / (fan_in + fan_out))
- ``lecun``  (LeCun normal, for SELU-like/linear): sqrt(1 / fan_in)

``scale`` is the search's ``init_scale`` hyperparameter. Samples are drawn in float64 and then
cast, so a float32 and a float64 network built from the same seed hold the same weights up to
rounding (the gradient check relies on that).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["INITIALIZERS", "get_initializer", "glorot", "he", "lecun"]


def _normal(std: float, fan_in: int, fan_out: int, rng: np.random.Generator, dtype) -> np.ndarray:
    return (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype, copy=False)


def he(
    fan_in: int, fan_out: int, rng: np.random.Generator, *, scale: float = 1.0, dtype="float32"
) -> np.ndarray:
    """Kaiming normal: std = scale * sqrt(2 / fan_in). Returns shape (fan_in, fan_out)."""
    return _normal(scale * math.sqrt(2.0 / fan_in), fan_in, fan_out, rng, dtype)


def glorot(
    fan_in: int, fan_out: int, rng: np.random.Generator, *, scale: float = 1.0, dtype="float32"
) -> np.ndarray:
    """Xavier normal: std = scale * sqrt(2 / (fan_in + fan_out)). Returns (fan_in, fan_out)."""
    return _normal(scale * math.sqrt(2.0 / (fan_in + fan_out)), fan_in, fan_out, rng, dtype)


def lecun(
    fan_in: int, fan_out: int, rng: np.random.Generator, *, scale: float = 1.0, dtype="float32"
) -> np.ndarray:
    """LeCun normal: std = scale * sqrt(1 / fan_in). Returns shape (fan_in, fan_out)."""
    return _normal(scale * math.sqrt(1.0 / fan_in), fan_in, fan_out, rng, dtype)


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {"he": he, "glorot": glorot, "lecun": lecun}


def get_initializer(name: str) -> Callable[..., np.ndarray]:
    """Look up an initializer by name; ValueError naming the allowed names otherwise."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown init {name!r}; allowed: {', '.join(sorted(INITIALIZERS))}"
        ) from None
