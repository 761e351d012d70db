"""A model that stands alone: the network, the preprocessing fitted on the training part, and
the labels as they were in the data, in one ``.npz`` file.

``Model.predict(X_raw)`` takes features as they are in the data (raw pixel values, a CSV's
columns), scales them as the training part was scaled, and returns the data's own labels
(numbers or words). The file holds no pickles (it is read with ``allow_pickle=False``): text is
JSON in 0-d unicode arrays.

File layout (``format`` = ``mlpsearch-model-v1``)
-------------------------------------------------
``architecture``, ``W<i>``, ``b<i>``
    The network, as :meth:`MLP.to_arrays` writes it.
``preprocessing``
    JSON: ``{"scaling": {"kind", "offset", "divisor"}, "n_features", "feature_names"}``
    (``feature_names`` is null where the data had none, e.g. images).
``labels``
    JSON: ``{"labels": [...], "class_names": [...]}``; output unit ``k`` is ``labels[k]``, an
    int or a string as in the data; ``class_names[k]`` is its readable name.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_atomic
from .network import _FORMAT as NETWORK_FORMAT
from .network import MLP
from .scaling import Scaling, nonfinite

__all__ = ["FORMAT", "Model"]

FORMAT = "mlpsearch-model-v1"
OTHER_ARRAYS = frozenset({"format", "preprocessing", "labels"})


@dataclass(frozen=True, eq=False)
class Model:
    """A trained network with what it needs to take raw data and give the data's labels.

    Attributes
    ----------
    network : the MLP; its inputs are scaled features, its outputs one logit per class.
    scaling : the scaling fitted on the training part, shape (n_features,) each.
    labels : ``labels[k]`` is the data's label (int or str) of output unit k.
    class_names : readable names of the classes (``"T-shirt/top"``, or ``str(label)``).
    feature_names : the features' names (a CSV header), or None.
    """

    network: MLP
    scaling: Scaling
    labels: tuple[int | str, ...]
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n_in, n_out = self.network.layer_sizes[0], self.network.layer_sizes[-1]
        if self.scaling.n_features != n_in:
            raise ValueError(
                f"model: the scaling has {self.scaling.n_features} features, the network {n_in}"
            )
        if len(self.labels) != n_out or len(self.class_names) != n_out:
            raise ValueError(
                f"model: {len(self.labels)} labels and {len(self.class_names)} class names for "
                f"{n_out} outputs"
            )
        if self.feature_names is not None and len(self.feature_names) != n_in:
            raise ValueError(f"model: {len(self.feature_names)} feature names for {n_in} inputs")

    @classmethod
    def from_dataset(cls, network: MLP, data) -> Model:
        """``network`` with the preprocessing and labels of ``data`` (``engine.data.Dataset``)."""
        return cls(network, data.scaling, data.labels, data.classes, data.feature_names)

    @property
    def n_features(self) -> int:
        return self.network.layer_sizes[0]

    # --- prediction ----------------------------------------------------------------------------

    def prepare(self, X, feature_names=None) -> np.ndarray:
        """Check raw features and scale them: the network's input (n, n_features).

        Parameters
        ----------
        X : numbers, shape (n, n_features) or (n, ...) with n_features values per row (images).
        feature_names : the names of X's columns (a CSV header without its label column);
            where the model knows its features' names, columns are matched by name.

        Raises
        ------
        ValueError
            One line: wrong shape, feature names, dtype, or NaN/infinite values.
        """
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise ValueError(f"features must be numbers; got dtype {X.dtype}")
        if X.ndim < 2:
            raise ValueError(
                f"features must have shape (samples, {self.n_features}); got {X.shape}"
            )
        X = X.reshape(len(X), -1) if X.shape[0] else X.reshape(0, int(np.prod(X.shape[1:])))
        if feature_names is not None:
            X = self._by_name(X, list(feature_names))
        if X.shape[1] != self.n_features:
            raise ValueError(
                f"the model takes {self.n_features} features per sample; the data has {X.shape[1]}"
            )
        problem = nonfinite(X)
        if problem:
            raise ValueError(f"features hold {problem}")
        return self.scaling.apply(X, self.network.dtype)

    def _by_name(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        if self.feature_names is None:
            return X  # the model knows no names (images): the count is checked
        want = list(self.feature_names)
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        if missing or extra:
            parts = [f"{what} {_few(names)}" for what, names in (("missing", missing),
                     ("unknown", extra)) if names]  # fmt: skip
            raise ValueError(
                f"feature columns do not match the model's ({'; '.join(parts)}); it takes: "
                + _few(want, 12)
            )
        if len(set(names)) != len(names):
            raise ValueError("feature columns: a name appears twice")
        return X[:, [names.index(n) for n in want]]

    def predict_proba(self, X, feature_names=None) -> np.ndarray:
        """Class probabilities (n, n_classes), float64; column k is ``labels[k]``."""
        logits = self.network.forward(self.prepare(X, feature_names)).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)  # max-shifted softmax: no overflow
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, X, feature_names=None) -> np.ndarray:
        """The data's labels (n,): ints, or strings where the data's labels were words."""
        codes = self.network.predict(self.prepare(X, feature_names))
        return self.label_array()[codes]

    def label_array(self) -> np.ndarray:
        """``labels`` as an array: int64, or unicode strings."""
        if all(isinstance(v, int) for v in self.labels):
            return np.array(self.labels, dtype=np.int64)
        return np.array([str(v) for v in self.labels])

    def codes(self, y) -> np.ndarray:
        """Output units (n,) of the data's labels ``y``; a label the model never saw -> -1."""
        y = np.asarray(y)
        lookup = {str(v): k for k, v in enumerate(self.labels)}
        if y.dtype.kind == "f" and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        return np.array([lookup.get(str(v), -1) for v in y.tolist()], dtype=np.int64)

    # --- the file --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model file (atomically: the old file or the new one, never half)."""
        pre = {
            "scaling": self.scaling.to_json(),
            "n_features": self.n_features,
            "feature_names": None if self.feature_names is None else list(self.feature_names),
        }
        labels = {"labels": list(self.labels), "class_names": list(self.class_names)}
        arrays = {
            "format": np.array(FORMAT),
            "preprocessing": np.array(json.dumps(pre)),
            "labels": np.array(json.dumps(labels)),
            **self.network.to_arrays(),
        }
        write_atomic(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model file; anything else raises ValueError with one line naming the file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such model file")
        if not zipfile.is_zipfile(path):  # (numpy would suggest loading it with pickle)
            raise ValueError(f"{path}: not a usable mlpsearch model file: not an .npz archive")
        try:
            with np.load(path, allow_pickle=False) as f:
                marker = str(f["format"]) if "format" in f.files else None
                if marker == NETWORK_FORMAT:
                    raise ValueError(
                        "it holds only a network's weights (an older mlpsearch saved it): no "
                        "scaling, no labels; save it again with mlpsearch rerun or train"
                    )
                if marker != FORMAT:
                    raise ValueError("no mlpsearch model format marker")
                network = MLP.from_arrays(f, OTHER_ARRAYS)
                pre = json.loads(str(f["preprocessing"]))
                labels = json.loads(str(f["labels"]))
            names = pre["feature_names"]
            return cls(
                network,
                Scaling.from_json(pre["scaling"]),
                tuple(_label(v) for v in labels["labels"]),
                tuple(str(v) for v in labels["class_names"]),
                None if names is None else tuple(str(n) for n in names),
            )
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{path}: not a usable mlpsearch model file: {reason}") from None


def _few(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")


def _label(v) -> int | str:
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"label {v!r} is neither an integer nor text")
    return v
