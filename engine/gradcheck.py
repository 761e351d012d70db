"""Gradient check: the network's analytic gradients against central differences, in float64.

For every parameter theta_k, numeric_k = (L(theta_k + eps) - L(theta_k - eps)) / (2 eps), with L
the batch-mean cross-entropy (against label-smoothed targets where asked) plus the L2 term, no
dropout. The error of one parameter array is

    max_k |analytic_k - numeric_k| / max(max_k |analytic_k|, max_k |numeric_k|)

(relative to that array's largest gradient, so that entries whose gradient is ~0 do not turn
rounding noise into huge "relative" errors), and ``gradcheck`` returns the maximum over all
weight and bias arrays. A correct float64 network gives ~1e-9 or less; a wrong derivative gives
>= 1e-3.
"""

from __future__ import annotations

import numpy as np

from .network import MLP

__all__ = ["gradcheck"]


def gradcheck(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    *,
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
    eps: float = 1e-6,
) -> float:
    """Maximum relative error between analytic and central-difference gradients.

    Parameters
    ----------
    model : MLP (any dtype; a float64 copy is checked, the model itself is not changed)
    X : (b, n_in) array; y : (b,) integer labels
    weight_decay : L2 coefficient included in the loss
    label_smoothing : of the targets the cross-entropy is taken against
    eps : finite-difference step

    Returns
    -------
    float, max over parameter arrays of the error defined in the module docstring
    """
    net = model.clone(dtype="float64")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)

    def loss():
        return net.loss_and_grads(X, y, weight_decay, label_smoothing)

    _, wgrads, bgrads = loss()
    worst = 0.0
    for param, analytic in zip(net.weights + net.biases, wgrads + bgrads, strict=True):
        numeric = np.empty_like(analytic)
        flat, num = param.reshape(-1), numeric.reshape(-1)  # views
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            plus = loss()[0]
            flat[k] = old - eps
            minus = loss()[0]
            flat[k] = old
            num[k] = (plus - minus) / (2 * eps)
        scale = max(np.abs(analytic).max(), np.abs(numeric).max())
        if scale > 0:
            worst = max(worst, float(np.abs(analytic - numeric).max() / scale))
    return worst
