"""Activation functions and their derivatives, in one table keyed by the names the search uses.

Derivative convention (the one rule of this module)
---------------------------------------------------
``act.derivative(z, a)`` returns f'(z), and is **always given both** the pre-activation ``z`` and
the output ``a = f(z)`` it produced in the forward pass. Each entry reads whichever of the two
gives the stabler or cheaper formula (``tanh`` and ``sigmoid`` use ``a``; ``gelu`` needs ``z``;
``relu`` uses ``z``), but the caller never has to know which: it passes both, every time. That is
why the network keeps pre-activations and outputs in separate buffers.

Every function writes into ``out=`` when given one, so the training loop allocates nothing.
``backward(z, a, grad, work)`` multiplies an upstream gradient ``grad`` by f'(z) in place, using
``work`` (same shape and dtype as ``grad``) as scratch.

Shapes: all arrays are ``(batch, units)`` (any shape works, element-wise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]


def _buf(out: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.empty_like(like) if out is None else out


def _exp_minus_abs(z: np.ndarray, work: np.ndarray | None) -> np.ndarray:
    """exp(-|z|), in (0, 1] at any z (it cannot overflow), in ``work`` (a new array if None)."""
    e = _buf(work, z)
    np.abs(z, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)
    return e


@dataclass(frozen=True)
class Activation:
    """Base class: an element-wise nonlinearity f with its derivative.

    Subclasses implement ``forward(z, out)`` and ``derivative(z, a, out)``. ``out`` must not alias
    ``z`` in ``forward`` for entries that read ``z`` again (the network never aliases them).
    """

    name: str = ""

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.forward(z)

    def forward(
        self, z: np.ndarray, out: np.ndarray | None = None, work: np.ndarray | None = None
    ) -> np.ndarray:
        """Return f(z). z: any shape; out: same shape and dtype (may be given to avoid a copy)."""
        raise NotImplementedError

    def derivative(
        self, z: np.ndarray, a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Return f'(z), given the pre-activation ``z`` and the output ``a = f(z)``."""
        raise NotImplementedError

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad: np.ndarray, work: np.ndarray | None = None
    ) -> np.ndarray:
        """Multiply ``grad`` (dL/da) in place by f'(z), giving dL/dz. ``work``: scratch buffer."""
        d = self.derivative(z, a, out=work)
        np.multiply(grad, d, out=grad)
        return grad


@dataclass(frozen=True)
class ReLU(Activation):
    """max(z, 0).

    ReLU'(0) is taken as 0, on purpose: a unit sitting exactly at 0 outputs 0 and counts as
    dead (``MLP.dead_fraction``); giving it no gradient keeps "dead" and "gets no gradient" the
    same set. It is also what PyTorch and scikit-learn use.
    """

    name: str = "relu"

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        if work is not None:
            # np.maximum against a same-shaped zero array runs about 3x faster than against the
            # scalar 0 (numpy's scalar path is not vectorised for maximum).
            work.fill(0)
            return np.maximum(z, work, out=out)
        return np.maximum(z, 0, out=out)

    def derivative(self, z, a, out=None):
        return np.greater(z, 0, out=_buf(out, z))  # 1.0 where z > 0, else 0.0 (ReLU'(0) = 0)


@dataclass(frozen=True)
class LeakyReLU(Activation):
    """z for z > 0, slope * z otherwise. The derivative at 0 is ``slope``, as for ReLU."""

    name: str = "leaky_relu"
    slope: float = 0.01

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        # max(z, slope*z) is the leaky ReLU for 0 < slope < 1.
        np.multiply(z, self.slope, out=out)
        return np.maximum(z, out, out=out)

    def derivative(self, z, a, out=None):
        out = np.greater(z, 0, out=_buf(out, z))  # 1.0 / 0.0
        out *= 1.0 - self.slope
        out += self.slope
        return out


@dataclass(frozen=True)
class ELU(Activation):
    """z for z > 0, alpha * (exp(z) - 1) otherwise; exp is taken of min(z, 0): no overflow.

    Derivative: 1 for z > 0, a + alpha otherwise (at 0 both give 1 when alpha = 1).
    """

    name: str = "elu"
    alpha: float = 1.0

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        w = np.empty_like(z) if work is None else work
        np.minimum(z, 0, out=w)
        np.expm1(w, out=w)
        if self.alpha != 1.0:
            w *= self.alpha
        np.maximum(z, 0, out=out)
        out += w  # exactly one of the two terms is non-zero
        return out

    def derivative(self, z, a, out=None):
        out = _buf(out, z)
        np.add(a, self.alpha, out=out)
        np.copyto(out, 1, where=z > 0)
        return out


@dataclass(frozen=True)
class Tanh(Activation):
    """tanh(z); derivative 1 - a**2 from the output."""

    name: str = "tanh"

    def forward(self, z, out=None, work=None):
        return np.tanh(z, out=_buf(out, z))

    def derivative(self, z, a, out=None):
        out = np.multiply(a, a, out=_buf(out, z))
        np.subtract(1, out, out=out)
        return out


@dataclass(frozen=True)
class Sigmoid(Activation):
    """1 / (1 + exp(-z)), computed from e = exp(-|z|) <= 1 so that nothing overflows:
    1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0. Derivative a * (1 - a) from the output.
    """

    name: str = "sigmoid"

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        e = _exp_minus_abs(z, work)
        np.add(e, 1, out=out)
        np.divide(1, out, out=out)  # 1 / (1 + e)
        np.multiply(e, out, out=e)  # e / (1 + e)
        np.copyto(out, e, where=z < 0)
        return out

    def derivative(self, z, a, out=None):
        out = np.subtract(1, a, out=_buf(out, z))
        np.multiply(out, a, out=out)
        return out


@dataclass(frozen=True)
class Softplus(Activation):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): no overflow at any z.

    Derivative sigmoid(z) = 1 - exp(-a) = -expm1(-a), from the output: accurate at both ends
    (a -> 0 gives ~a = exp(z); large a gives ~1).
    """

    name: str = "softplus"

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        w = _exp_minus_abs(z, work)
        np.log1p(w, out=w)
        np.maximum(z, 0, out=out)
        out += w
        return out

    def derivative(self, z, a, out=None):
        out = np.negative(a, out=_buf(out, z))
        np.expm1(out, out=out)
        np.negative(out, out=out)
        return out


_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


@dataclass(frozen=True)
class GELU(Activation):
    """GELU, tanh approximation: 0.5 z (1 + tanh(k (z + c z^3))), k = sqrt(2/pi), c = 0.044715.

    Not monotonic, so its derivative cannot be read off the output: it uses z.
    f'(z) = 0.5 (1 + t) + 0.5 z (1 - t^2) k (1 + 3 c z^2), t = tanh(k (z + c z^3)).
    """

    name: str = "gelu"

    def _t(self, z, out):
        np.multiply(z, z, out=out)
        out *= _GELU_C
        out += 1
        out *= z
        out *= _GELU_K  # k (z + c z^3)
        return np.tanh(out, out=out)

    def forward(self, z, out=None, work=None):
        out = _buf(out, z)
        t = self._t(z, out)
        t += 1
        t *= z
        t *= 0.5
        return t

    def derivative(self, z, a, out=None):
        out = _buf(out, z)
        t = self._t(z, np.empty_like(z))
        np.multiply(z, z, out=out)
        out *= 3 * _GELU_C
        out += 1
        out *= z
        out *= 0.5 * _GELU_K  # 0.5 z k (1 + 3 c z^2)
        out *= 1 - t * t
        t += 1
        t *= 0.5
        out += t
        return out


@dataclass(frozen=True)
class Identity(Activation):
    """f(z) = z, f'(z) = 1."""

    name: str = "identity"

    def forward(self, z, out=None, work=None):
        if out is None:
            return z.copy()
        np.copyto(out, z)
        return out

    def derivative(self, z, a, out=None):
        out = _buf(out, z)
        out.fill(1)
        return out

    def backward(self, z, a, grad, work=None):
        return grad


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in (
        ReLU(),
        LeakyReLU(),
        ELU(),
        Tanh(),
        Sigmoid(),
        Softplus(),
        GELU(),
        Identity(),
    )
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; ValueError naming the allowed names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(sorted(ACTIVATIONS))}"
        ) from None
