"""The multi-layer perceptron: parameters, forward pass, backward pass, save and load.

Layout
------
``weights[i]`` has shape ``(fan_in, fan_out)`` and ``biases[i]`` shape ``(fan_out,)``; a batch is
row-major, ``Z = X @ W + b``. All parameters live in one contiguous vector (weights of every layer
first, then biases) and ``weights``/``biases`` are views into it, as are the gradients. The
optimizer then updates every parameter with a handful of passes over one array instead of a few
passes per array. Keep the views: change parameters in place (``model.weights[0][...] = w``).

Speed
-----
The batch loop allocates nothing: each batch size gets a ``_Workspace`` of preallocated
pre-activation, activation, gradient and scratch buffers (a smaller last batch uses views of the
first rows), every numpy call writes through ``out=``, and the loss is the fused softmax
cross-entropy of ``engine.losses``. Pre-activations ``Z`` and outputs ``A`` are kept in separate
buffers because the derivative convention (``engine.activations``) passes both.
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .activations import Activation, get_activation
from .files import write_atomic
from .hyperparameters import RULES
from .initializers import get_initializer
from .losses import FusedSoftmaxCE

__all__ = ["MLP"]

_FORMAT = "mlpsearch-mlp-v1"
_DTYPES = ("float32", "float64")
_EVAL_ROWS = 1024  # rows per chunk when evaluating a large array


class _Workspace:
    """Preallocated buffers for batches of up to ``capacity`` rows (see the module docstring)."""

    def __init__(self, model: MLP, capacity: int) -> None:
        dt = model.dtype
        sizes = model.layer_sizes
        hidden = sizes[1:-1]
        self.capacity = capacity
        self.x = np.empty((capacity, sizes[0]), dtype=dt)
        self.y = np.empty(capacity, dtype=np.intp)
        self.z = [np.empty((capacity, n), dtype=dt) for n in hidden]  # pre-activations
        self.a = [np.empty((capacity, n), dtype=dt) for n in hidden]  # activations
        self.g = [np.empty((capacity, n), dtype=dt) for n in hidden]  # dL/da, then dL/dz
        self.work = [np.empty((capacity, n), dtype=dt) for n in hidden]  # activation scratch
        self.h: list[np.ndarray] = []  # dropout outputs (lazily, only when dropout is used)
        self.mask: list[np.ndarray] = []  # dropout masks, 0 or 1 / (1 - p)
        self.logits = np.empty((capacity, sizes[-1]), dtype=dt)
        self.logits_work = np.empty((capacity, sizes[-1]), dtype=dt)
        self.ones = np.ones(capacity, dtype=dt)
        self.loss = FusedSoftmaxCE(capacity, sizes[-1], dt)
        self._views: dict[int, _Workspace] = {}

    def ensure_dropout(self) -> None:
        if not self.h:
            self.h = [np.empty_like(a) for a in self.a]
            self.mask = [np.empty_like(a) for a in self.a]

    def rows(self, b: int) -> _Workspace:
        """This workspace restricted to the first ``b`` rows (cached views: no copies)."""
        if b == self.capacity:
            return self
        view = self._views.get(b)
        if view is None or len(view.h) != len(self.h):
            view = object.__new__(_Workspace)
            view.capacity = b
            for name in ("x", "y", "logits", "logits_work", "ones"):
                setattr(view, name, getattr(self, name)[:b])
            for name in ("z", "a", "g", "work", "h", "mask"):
                setattr(view, name, [arr[:b] for arr in getattr(self, name)])
            view.loss = self.loss
            view._views = {}
            self._views[b] = view
        return view


def _check_layer_sizes(layer_sizes) -> list[int]:
    """``layer_sizes`` as ints: inputs, then ``hidden_layers`` widths of ``units`` each (checked
    against their rules), then classes."""
    sizes = list(layer_sizes)
    whole = all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in sizes)
    if len(sizes) < 2 or not whole or sizes[0] < 1 or sizes[-1] < 1:
        raise ValueError(
            f"layer_sizes must list at least 2 integers, inputs and classes >= 1, got {sizes!r}"
        )
    sizes = [int(n) for n in sizes]
    RULES["hidden_layers"].check(len(sizes) - 2, f"MLP.hidden_layers (layer_sizes {sizes})")
    for i, n in enumerate(sizes[1:-1], start=1):
        RULES["units"].check(n, f"MLP.units (layer_sizes[{i}])")
    return sizes


class MLP:
    """Fully connected network with softmax cross-entropy output.

    Parameters
    ----------
    layer_sizes : list of int, e.g. ``[784, 256, 128, 10]`` (inputs, hidden..., classes)
    activation : name, or one name per hidden layer (see ``engine.ACTIVATIONS``)
    init : initializer name (``engine.INITIALIZERS``), multiplied by ``init_scale``
    bias_init : initial value of every bias
    dtype : "float32" (speed) or "float64" (gradient checks)
    seed : seed of the generator that draws the initial weights

    Arguments are checked against ``engine.hyperparameters.RULES`` (``hidden_layers`` and
    ``units`` for the hidden part of ``layer_sizes``): ValueError naming the argument otherwise.
    """

    def __init__(
        self,
        layer_sizes,
        activation: str | list[str] | tuple[str, ...] = RULES["activation"].default,
        *,
        init: str = RULES["init"].default,
        init_scale: float = RULES["init_scale"].default,
        bias_init: float = RULES["bias_init"].default,
        dtype: str = "float32",
        seed: int = RULES["seed"].default,
    ) -> None:
        sizes = _check_layer_sizes(layer_sizes)
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            names = [activation] * n_hidden
        else:
            names = list(activation)
            if len(names) != n_hidden:
                raise ValueError(
                    f"activation: need one name per hidden layer ({n_hidden}), got {len(names)}"
                )
        for name in names:
            RULES["activation"].check(name, "MLP.activation")
        acts = [get_activation(n) for n in names]
        init = RULES["init"].check(init, "MLP.init")
        init_fn = get_initializer(init)
        if str(np.dtype(dtype)) not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        init_scale = RULES["init_scale"].check(init_scale, "MLP.init_scale")
        bias_init = RULES["bias_init"].check(bias_init, "MLP.bias_init")
        seed = RULES["seed"].check(seed, "MLP.seed")

        self.layer_sizes: list[int] = sizes
        self.activations: list[str] = names
        self.init = init
        self.init_scale = float(init_scale)
        self.bias_init = float(bias_init)
        self.dtype = np.dtype(dtype)
        self.seed = int(seed)
        self._acts: list[Activation] = acts

        shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.n_weights = sum(i * o for i, o in shapes)
        self.n_params = self.n_weights + sum(sizes[1:])
        self.params = np.empty(self.n_params, dtype=self.dtype)  # every parameter, flat
        self.grads = np.zeros(self.n_params, dtype=self.dtype)  # their gradients, flat
        self.weights, self.biases = self._split(self.params)
        self.weight_grads, self.bias_grads = self._split(self.grads)

        rng = np.random.default_rng(self.seed)
        for w, (fan_in, fan_out) in zip(self.weights, shapes, strict=True):
            w[...] = init_fn(fan_in, fan_out, rng, scale=self.init_scale, dtype=self.dtype)
        for b in self.biases:
            b.fill(self.bias_init)
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()
        self._decay_tmp: np.ndarray | None = None

    # ----------------------------------------------------------------- structure

    def _split(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        ws, bs, k = [], [], 0
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True):
            ws.append(flat[k : k + fan_in * fan_out].reshape(fan_in, fan_out))
            k += fan_in * fan_out
        for fan_out in self.layer_sizes[1:]:
            bs.append(flat[k : k + fan_out])
            k += fan_out
        return ws, bs

    def architecture(self) -> dict:
        """JSON-able description from which ``MLP(**arch)`` rebuilds this network (untrained)."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "activations": list(self.activations),
            "init": self.init,
            "init_scale": self.init_scale,
            "bias_init": self.bias_init,
            "dtype": str(self.dtype),
            "seed": self.seed,
        }

    @classmethod
    def from_architecture(cls, arch: dict) -> MLP:
        """Build an (untrained) network from ``architecture()``'s dictionary."""
        kw = dict(arch)
        kw["activation"] = kw.pop("activations")
        return cls(**kw)

    def clone(self, dtype: str | None = None) -> MLP:
        """An independent copy with the same parameters, optionally cast to another dtype."""
        arch = self.architecture()
        if dtype is not None:
            arch["dtype"] = str(np.dtype(dtype))
        other = MLP.from_architecture(arch)
        other.params[...] = self.params
        return other

    def __repr__(self) -> str:
        return (
            f"MLP({self.layer_sizes}, {self.activations}, init={self.init!r}, "
            f"init_scale={self.init_scale}, dtype={str(self.dtype)!r})"
        )

    def _workspace(self, capacity: int) -> _Workspace:
        ws = self._workspaces.get(capacity)
        if ws is None:
            ws = _Workspace(self, capacity)
            self._workspaces[capacity] = ws
            while len(self._workspaces) > 4:  # bounded: memory never grows across epochs
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(capacity)
        return ws

    def _as_input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(
                f"X must have shape (n, {self.layer_sizes[0]}), got {getattr(X, 'shape', None)}"
            )
        return X

    # ----------------------------------------------------------------- hot path

    def _forward_ws(
        self,
        ws: _Workspace,
        x: np.ndarray,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Forward pass of ``x`` (b, n_in) through workspace ``ws`` (b rows); returns logits."""
        inp = x
        last = len(self.weights) - 1
        for i, act in enumerate(self._acts):
            z, a, work = ws.z[i], ws.a[i], ws.work[i]
            np.matmul(inp, self.weights[i], out=z)  # (b, fan_in) @ (fan_in, fan_out)
            # z += bias, as a broadcast copy and a same-shape add: numpy's broadcasting add
            # would allocate a scratch buffer on every call, this pair runs as fast without.
            np.copyto(work, self.biases[i])
            np.add(z, work, out=z)
            act.forward(z, out=a, work=work)
            if dropout > 0.0:
                # Inverted dropout: keep with probability 1 - p and scale by 1 / (1 - p), so the
                # expected activation is unchanged and evaluation needs no rescaling.
                m = ws.mask[i]
                rng.random(out=m, dtype=self.dtype.type)
                np.greater_equal(m, dropout, out=m)
                m *= 1.0 / (1.0 - dropout)
                np.multiply(a, m, out=ws.h[i])
                inp = ws.h[i]
            else:
                inp = a
        np.matmul(inp, self.weights[last], out=ws.logits)  # (b, fan_in) @ (fan_in, classes)
        np.copyto(ws.logits_work, self.biases[last])
        np.add(ws.logits, ws.logits_work, out=ws.logits)
        return ws.logits

    def _forward_backward(
        self,
        ws: _Workspace,
        x: np.ndarray,
        y: np.ndarray,
        *,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        rng: np.random.Generator | None = None,
        scale: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> tuple[float, int]:
        """One forward and backward pass.

        The gradient of ``scale * (mean cross-entropy + weight_decay / 2 * sum W**2)`` (the
        cross-entropy against targets smoothed by ``label_smoothing``) lands in
        ``self.grads`` (views: ``weight_grads``, ``bias_grads``). Training passes the learning
        rate as ``scale`` for the SGD family: every gradient is linear in the logit gradient, so
        scaling that small (b, classes) array saves the optimizer a pass over all parameters.
        Returns the summed (smoothed) cross-entropy over the b rows (no L2 term) and the number of
        misclassified rows. ``ws`` must have exactly b rows.
        """
        b = x.shape[0]
        logits = self._forward_ws(ws, x, dropout, rng)
        # logits now hold scale * dL/dlogits
        loss_sum, errors = ws.loss(logits, y, scale / b, label_smoothing)
        dz = logits
        ones = ws.ones
        for i in range(len(self.weights) - 1, -1, -1):
            if i == 0:
                inp = x
            else:
                inp = ws.h[i - 1] if dropout > 0.0 else ws.a[i - 1]
            np.matmul(inp.T, dz, out=self.weight_grads[i])  # (fan_in, b) @ (b, fan_out)
            np.matmul(ones, dz, out=self.bias_grads[i])  # column sums: (b,) @ (b, fan_out)
            if i > 0:
                g = ws.g[i - 1]
                np.matmul(dz, self.weights[i].T, out=g)  # (b, fan_out) @ (fan_out, fan_in)
                if dropout > 0.0:
                    np.multiply(g, ws.mask[i - 1], out=g)
                self._acts[i - 1].backward(ws.z[i - 1], ws.a[i - 1], g, ws.work[i - 1])
                dz = g
        if weight_decay:
            if self._decay_tmp is None:
                self._decay_tmp = np.empty(self.n_weights, dtype=self.dtype)
            tmp = self._decay_tmp
            np.multiply(self.params[: self.n_weights], weight_decay * scale, out=tmp)
            np.add(self.grads[: self.n_weights], tmp, out=self.grads[: self.n_weights])
        return loss_sum, errors

    # ----------------------------------------------------------------- public API

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Logits for ``X`` (n, n_in) -> (n, n_classes), evaluation mode (no dropout)."""
        X = self._as_input(X)
        n = X.shape[0]
        out = np.empty((n, self.layer_sizes[-1]), dtype=self.dtype)
        cap = max(1, min(n, _EVAL_ROWS))
        ws = self._workspace(cap)
        for s in range(0, n, cap):
            v = ws.rows(min(cap, n - s))
            np.copyto(v.x, X[s : s + v.capacity], casting="same_kind")
            out[s : s + v.capacity] = self._forward_ws(v, v.x)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (n,) int64: arg-max of the logits."""
        return np.argmax(self.forward(X), axis=1).astype(np.int64)

    def loss_and_grads(
        self,
        X: np.ndarray,
        y: np.ndarray,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Mean cross-entropy (+ weight_decay/2 * sum W**2) of the batch and its gradients.

        Parameters
        ----------
        X : (b, n_in) array; y : (b,) integer labels
        weight_decay : L2 coefficient; label_smoothing : of the targets (``engine.losses``)

        Returns
        -------
        loss : float
        weight_grads : list of (fan_in, fan_out) arrays (fresh copies)
        bias_grads : list of (fan_out,) arrays (fresh copies)
        """
        X = self._as_input(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        ws = _Workspace(self, X.shape[0])  # not cached: a one-off size
        np.copyto(ws.x, X, casting="same_kind")
        np.copyto(ws.y, y, casting="same_kind")
        loss_sum, _ = self._forward_backward(
            ws, ws.x, ws.y, weight_decay=weight_decay, label_smoothing=label_smoothing
        )
        loss = loss_sum / X.shape[0]
        if weight_decay:
            w = self.params[: self.n_weights].astype(np.float64)
            loss += 0.5 * weight_decay * float(w @ w)
        return (
            loss,
            [g.copy() for g in self.weight_grads],
            [g.copy() for g in self.bias_grads],
        )

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float, list[float]]:
        """One evaluation pass: (mean cross-entropy, error rate, dead fraction per hidden layer).

        A hidden unit is dead when its output is 0 for every row of ``X``.
        """
        X = self._as_input(X)
        n = X.shape[0]
        if n == 0:
            raise ValueError("evaluate: X has no rows")
        cap = min(n, _EVAL_ROWS)
        ws = self._workspace(cap)
        alive = [np.zeros(k, dtype=bool) for k in self.layer_sizes[1:-1]]
        loss_sum, errors = 0.0, 0
        for s in range(0, n, cap):
            v = ws.rows(min(cap, n - s))
            np.copyto(v.x, X[s : s + v.capacity], casting="same_kind")
            np.copyto(v.y, y[s : s + v.capacity], casting="same_kind")
            logits = self._forward_ws(v, v.x)
            for al, a in zip(alive, v.a, strict=True):
                al |= np.any(a != 0, axis=0)
            ls, e = v.loss(logits, v.y, 1.0)
            loss_sum += ls
            errors += e
        dead = [1.0 - float(np.count_nonzero(al)) / al.size for al in alive]
        return loss_sum / n, errors / n, dead

    def dead_fraction(self, X: np.ndarray) -> list[float]:
        """Per hidden layer, the fraction of units whose output is 0 for every row of ``X``."""
        X = self._as_input(X)
        cap = max(1, min(X.shape[0], _EVAL_ROWS))
        ws = self._workspace(cap)
        alive = [np.zeros(k, dtype=bool) for k in self.layer_sizes[1:-1]]
        for s in range(0, X.shape[0], cap):
            v = ws.rows(min(cap, X.shape[0] - s))
            np.copyto(v.x, X[s : s + v.capacity], casting="same_kind")
            self._forward_ws(v, v.x)
            for al, a in zip(alive, v.a, strict=True):
                al |= np.any(a != 0, axis=0)
        return [1.0 - float(np.count_nonzero(al)) / al.size for al in alive]

    # ----------------------------------------------------------------- persistence

    def save(self, path) -> None:
        """Write architecture and parameters to an ``.npz`` file (no pickles inside).

        Written atomically (:func:`~mlpsearch.engine.files.write_atomic`): a failed save
        leaves the previous file at ``path``, or none, never half a model.
        """
        arrays = {"format": np.array(_FORMAT), **self.to_arrays()}
        # into a file object: np.savez would append ".npz" to a name that lacks it
        write_atomic(path, lambda f: np.savez(f, **arrays))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a saved network: ``architecture`` (JSON text), ``W<i>`` and ``b<i>``."""
        arrays = {"architecture": np.array(json.dumps(self.architecture(), sort_keys=True))}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"W{i}"] = w
            arrays[f"b{i}"] = b
        return arrays

    @classmethod
    def from_arrays(cls, f, others: frozenset[str] = frozenset()) -> MLP:
        """Rebuild a network from :meth:`to_arrays`'s arrays in ``f`` (an open ``.npz``).

        ``others``: names of the other arrays the file may hold. Raises ValueError (one line).
        """
        arch = json.loads(str(f["architecture"]))
        if not isinstance(arch, dict):
            raise ValueError("architecture is not a JSON object")
        model = cls.from_architecture(arch)
        n_layers = len(model.weights)
        expected = {"architecture"} | set(others)
        expected |= {f"W{i}" for i in range(n_layers)} | {f"b{i}" for i in range(n_layers)}
        files = set(f.files)
        if files != expected:
            raise ValueError(f"arrays {sorted(files ^ expected)} missing or unexpected")
        for i in range(n_layers):
            for name, dst in ((f"W{i}", model.weights[i]), (f"b{i}", model.biases[i])):
                src = f[name]
                if src.shape != dst.shape:
                    raise ValueError(f"{name} has shape {src.shape}, expected {dst.shape}")
                if src.dtype != dst.dtype:
                    raise ValueError(f"{name} has dtype {src.dtype}, expected {dst.dtype}")
                if not np.all(np.isfinite(src)):
                    raise ValueError(f"{name} holds non-finite values")
                dst[...] = src
        return model

    @classmethod
    def load(cls, path) -> MLP:
        """Read a network written by ``save`` (or the network of a ``engine.model`` file);
        anything else -> ValueError, one-line reason."""
        from .model import FORMAT as MODEL_FORMAT
        from .model import OTHER_ARRAYS

        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                marker = str(f["format"]) if "format" in f.files else None
                if marker == _FORMAT:
                    model = cls.from_arrays(f, frozenset({"format"}))
                elif marker == MODEL_FORMAT:
                    model = cls.from_arrays(f, OTHER_ARRAYS)
                else:
                    raise ValueError("no mlpsearch format marker")
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{path}: not a valid mlpsearch model file: {reason}") from None
        return model
