"""Optimizers (update parameters in place) and learning-rate schedules.

An optimizer is built on a list of parameter arrays and owns their state (velocities, moments);
``step(grads, lr)`` applies one update in place. It is the only code that mutates parameters.
The network keeps every parameter in one flat vector, so training passes ``[model.params]`` and
``[model.grads]`` and each update is a few passes over one contiguous array.

Update rules (g = gradient, lr = learning rate of the current epoch)

- ``sgd``:      w -= lr * g                          (momentum with momentum 0)
- ``momentum``: v = mu * v - lr * g;  w += v         (scikit-learn's / Sutskever's form)
- ``nesterov``: v = mu * v - lr * g;  w += mu * v - lr * g
- ``adam``:     m = b1 m + (1 - b1) g;  s = b2 s + (1 - b2) g^2;  t += 1;
                w -= lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["OPTIMIZERS", "SCHEDULES", "Adam", "Momentum", "Optimizer", "make_optimizer"]


class Optimizer:
    """Base class. ``params``: arrays updated in place by ``step``; state arrays match them."""

    name = ""

    def __init__(self, params: list[np.ndarray]) -> None:
        self.params = list(params)

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        """Update every parameter in place from its gradient (same shapes, same order)."""
        raise NotImplementedError


class Momentum(Optimizer):
    """SGD with (optionally Nesterov) momentum. ``momentum=0`` is plain SGD (no state kept)."""

    name = "momentum"

    def __init__(
        self, params: list[np.ndarray], *, momentum: float = 0.9, nesterov: bool = False
    ) -> None:
        super().__init__(params)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocity = [np.zeros_like(p) for p in self.params] if self.momentum else []
        self._nesterov_tmp = [np.empty_like(p) for p in self.params] if self.nesterov else []
        # lr * g for step(); made on first use: the training loop passes it already scaled
        # (step_prescaled), so training holds no such copy of the parameters
        self._tmp: list[np.ndarray] = []

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        if not self._tmp:
            self._tmp = [np.empty_like(p) for p in self.params]
        for tmp, g in zip(self._tmp, grads, strict=True):
            np.multiply(g, lr, out=tmp)
        self.step_prescaled(self._tmp)

    def step_prescaled(self, scaled_grads: list[np.ndarray]) -> None:
        """The same update given ``lr * g`` instead of ``g`` (the training loop gets gradients
        already multiplied by the learning rate, see ``MLP._forward_backward``). Three passes
        over the parameters for momentum: v *= mu; v -= lr g; w += v."""
        mu = self.momentum
        for i, (p, lg) in enumerate(zip(self.params, scaled_grads, strict=True)):
            if not mu:
                np.subtract(p, lg, out=p)
                continue
            v = self.velocity[i]
            np.multiply(v, mu, out=v)
            np.subtract(v, lg, out=v)  # v = mu v - lr g
            if self.nesterov:
                np.subtract(p, lg, out=p)  # w -= lr g ...
                tmp = self._nesterov_tmp[i]
                np.multiply(v, mu, out=tmp)
                np.add(p, tmp, out=p)  # ... w += mu v
            else:
                np.add(p, v, out=p)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015)."""

    name = "adam"

    def __init__(
        self,
        params: list[np.ndarray],
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = [np.zeros_like(p) for p in self.params]
        self.s = [np.zeros_like(p) for p in self.params]
        self._tmp = [np.empty_like(p) for p in self.params]
        self._tmp2 = [np.empty_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: list[np.ndarray], lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1 = 1.0 - b1**self.t
        c2 = 1.0 - b2**self.t
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            m, s, tmp, tmp2 = self.m[i], self.s[i], self._tmp[i], self._tmp2[i]
            np.multiply(m, b1, out=m)
            np.multiply(g, 1.0 - b1, out=tmp)
            np.add(m, tmp, out=m)  # m = b1 m + (1 - b1) g
            np.multiply(g, g, out=tmp)
            np.multiply(tmp, 1.0 - b2, out=tmp)
            np.multiply(s, b2, out=s)
            np.add(s, tmp, out=s)  # s = b2 s + (1 - b2) g^2
            np.multiply(s, 1.0 / c2, out=tmp)
            np.sqrt(tmp, out=tmp)
            np.add(tmp, self.eps, out=tmp)  # sqrt(s_hat) + eps
            np.multiply(m, lr / c1, out=tmp2)  # lr * m_hat
            np.divide(tmp2, tmp, out=tmp2)
            np.subtract(p, tmp2, out=p)


def _sgd(params, *, momentum=0.0, **_):
    return Momentum(params, momentum=0.0)


def _momentum(params, *, momentum=0.9, **_):
    return Momentum(params, momentum=momentum)


def _nesterov(params, *, momentum=0.9, **_):
    return Momentum(params, momentum=momentum, nesterov=True)


def _adam(params, *, beta1=0.9, beta2=0.999, eps=1e-8, **_):
    return Adam(params, beta1=beta1, beta2=beta2, eps=eps)


# name -> factory(params, *, momentum, beta1, beta2, eps) -> Optimizer (unused keywords ignored)
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adam": _adam,
}


def make_optimizer(name: str, params: list[np.ndarray], **hyper) -> Optimizer:
    """Build optimizer ``name`` on ``params``; ValueError naming the allowed names otherwise."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **hyper)


# ---------------------------------------------------------------- schedules
# name -> f(base_lr, epoch, *, epochs, step_size, gamma) -> learning rate of that (1-based) epoch


def constant(base_lr: float, epoch: int, *, epochs: int, step_size: int, gamma: float) -> float:
    """The same rate every epoch."""
    return base_lr


def step(base_lr: float, epoch: int, *, epochs: int, step_size: int, gamma: float) -> float:
    """Multiply by ``gamma`` every ``step_size`` epochs: epochs 1..step_size use base_lr."""
    return base_lr * gamma ** ((epoch - 1) // step_size)


def cosine(base_lr: float, epoch: int, *, epochs: int, step_size: int, gamma: float) -> float:
    """Half a cosine from base_lr at epoch 1 towards 0 after the last epoch (never reaches 0)."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step,
    "cosine": cosine,
}
