"""Feature scaling fitted on a training part: ``(X - offset) / divisor``, one pair per feature.

The data loader fits it (``engine.data``), the trained network sees only scaled features, and a
model file (``engine.model``) carries it so that raw data is scaled the same way at prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Scaling", "nonfinite"]


@dataclass(frozen=True, eq=False)
class Scaling:
    """Per-feature ``offset`` and ``divisor``, float64 arrays of shape (n_features,).

    ``kind`` says how they were fitted: "unit" (to [0, 1] on the training part: min-max, or
    the format's maximum), "standard" (mean 0, standard deviation 1) or "none".
    """

    kind: str
    offset: np.ndarray
    divisor: np.ndarray

    def __post_init__(self) -> None:
        offset = np.asarray(self.offset, dtype=np.float64).reshape(-1)
        divisor = np.asarray(self.divisor, dtype=np.float64).reshape(-1)
        if offset.shape != divisor.shape:
            raise ValueError(f"scaling: offset has {offset.size} values, divisor {divisor.size}")
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(divisor))):
            raise ValueError("scaling: offset and divisor must be finite")
        if np.any(divisor == 0):
            raise ValueError("scaling: a divisor is 0")
        offset.flags.writeable = divisor.flags.writeable = False
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "divisor", divisor)

    @property
    def n_features(self) -> int:
        return int(self.offset.size)

    @classmethod
    def identity(cls, n_features: int) -> Scaling:
        return cls("none", np.zeros(n_features), np.ones(n_features))

    def apply(self, X: np.ndarray, dtype: str | np.dtype = "float32") -> np.ndarray:
        """``(X - offset) / divisor`` in float64, returned as ``dtype``; X (n, n_features)."""
        out = (np.asarray(X, dtype=np.float64) - self.offset) / self.divisor
        return out.astype(dtype, copy=False)

    def equals(self, other: Scaling) -> bool:
        return (
            self.kind == other.kind
            and np.array_equal(self.offset, other.offset)
            and np.array_equal(self.divisor, other.divisor)
        )

    def to_json(self) -> dict:
        """JSON-able; floats round-trip exactly (Python's repr of a float64)."""
        return {
            "kind": self.kind,
            "offset": self.offset.tolist(),
            "divisor": self.divisor.tolist(),
        }

    @classmethod
    def from_json(cls, doc: dict) -> Scaling:
        return cls(str(doc["kind"]), np.array(doc["offset"]), np.array(doc["divisor"]))


def nonfinite(X: np.ndarray, row: str = "row") -> str | None:
    """Where raw features X (n, n_features) hold NaN or infinite values, a phrase that says in
    how many rows and where first (1-based; ``row`` names a row, e.g. "data row"); else None.

    ``"NaN or infinite values in 2 rows (first: row 5, feature 2, value nan)"``: the data
    loaders and a model's ``prepare`` refuse such features with it.
    """
    if X.dtype.kind != "f":
        return None
    bad = ~np.isfinite(X)
    if not bad.any():
        return None
    r, c = np.argwhere(bad)[0]
    return (
        f"NaN or infinite values in {int(bad.any(axis=1).sum())} rows "
        f"(first: {row} {r + 1}, feature {c + 1}, value {X[r, c]})"
    )
