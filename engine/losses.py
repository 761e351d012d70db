"""Softmax fused with cross-entropy, and the L2 penalty.

Softmax is never differentiated on its own. With p = softmax(z) and a one-hot target y, the loss of
one row is  L = -log p_y = logsumexp(z) - z_y,  and its gradient is  dL/dz_j = p_j - y_j : the
derivative of logsumexp(z) is softmax(z) = p, and the derivative of -z_y is -1 at the target class.
The loss is a batch mean, so each row's gradient is divided by the batch size: (p - y) / batch.
logsumexp is evaluated after shifting each row by its maximum, so exp never overflows and at least
one term of every sum is exactly 1 (the log never sees 0).

Label smoothing ``eps`` trains against a softened target instead of the one-hot y: ``(1 - eps) * y
+ eps / K`` over K classes. The loss of a row becomes  logsumexp(z) - (1 - eps) z_y - eps mean(z),
and the gradient is still the fused  p - target : the prediction minus what it is trained towards.
The network can then never drive a logit gap to infinity to reach a loss of 0, which keeps an
over-fitting network from growing over-confident (Szegedy et al., 2016).

L2 weight decay: ``penalty = weight_decay / 2 * sum(W**2)`` over weight matrices only (biases are
not decayed); its gradient ``weight_decay * W`` is added by the network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FusedSoftmaxCE", "l2_penalty", "log_softmax", "softmax_cross_entropy"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``logits`` (batch, classes), max-shifted. Returns a new array."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(
    logits: np.ndarray, y: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its logit gradient.

    Parameters
    ----------
    logits : (batch, classes) array
    y : (batch,) integer labels in [0, classes)
    label_smoothing : eps, the share of the target spread evenly over the classes

    Returns
    -------
    loss : float, batch mean of -sum_k target[i, k] log softmax(logits)[i, k], with
        target = (1 - eps) onehot(y) + eps / classes (the one-hot target when eps = 0)
    grad : (batch, classes) array, (softmax(logits) - target) / batch
    """
    n, k = logits.shape
    eps = label_smoothing
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -(1.0 - eps) * float(logp[rows, y].sum()) / n
    if eps:
        loss -= eps / k * float(logp.sum()) / n
    grad = np.exp(logp)
    grad[rows, y] -= 1.0 - eps  # p - target, see the module docstring
    if eps:
        grad -= eps / k
    grad /= n
    return loss, grad


def l2_penalty(weights: list[np.ndarray], weight_decay: float) -> float:
    """weight_decay / 2 * sum of squared weights (biases excluded: pass weight matrices only)."""
    if weight_decay == 0.0:
        return 0.0
    return 0.5 * weight_decay * float(sum(np.vdot(w, w) for w in weights))


class FusedSoftmaxCE:
    """Allocation-free softmax cross-entropy for the training loop.

    Holds its small per-row buffers for up to ``capacity`` rows. ``__call__`` overwrites ``logits``
    with the gradient ``(p - target) * grad_scale`` (``grad_scale`` is normally 1 / batch; the
    target is the one-hot label, smoothed by ``label_smoothing``) and returns the summed loss
    over the rows and the number of rows whose arg-max is not the label.
    """

    def __init__(self, capacity: int, n_classes: int, dtype) -> None:
        self.capacity = capacity
        self.n_classes = n_classes
        self._rowbase = np.arange(capacity, dtype=np.intp) * n_classes  # flat index of row start
        self._ones = np.ones(n_classes, dtype=dtype)
        self._bufs = (
            self._rowbase,
            np.empty(capacity, dtype=np.intp),  # flat indices
            np.empty(capacity, dtype=np.intp),  # arg-max per row
            np.empty(capacity, dtype=bool),  # misclassified rows
            np.empty(capacity, dtype=dtype),  # row maxima
            np.empty(capacity, dtype=dtype),  # row sums of exp
            np.empty(capacity, dtype=dtype),  # shifted target logits, then their p
            np.empty(capacity, dtype=dtype),  # grad_scale / row sum
        )
        self._views: dict[int, tuple] = {capacity: self._bufs}

    def __call__(
        self, logits: np.ndarray, y: np.ndarray, grad_scale: float, label_smoothing: float = 0.0
    ) -> tuple[float, int]:
        """logits: (b, classes) C-contiguous, overwritten by the gradient; y: (b,) int labels."""
        b = logits.shape[0]
        views = self._views.get(b)
        if views is None:
            views = self._views[b] = tuple(buf[:b] for buf in self._bufs)
        rowbase, flat, amax, wrong, m, s, zy, r = views
        lf = logits.reshape(-1)  # a view: logits is contiguous

        np.argmax(logits, axis=1, out=amax)
        np.not_equal(amax, y, out=wrong)
        errors = int(np.count_nonzero(wrong))
        np.add(rowbase, amax, out=flat)
        np.take(lf, flat, out=m)  # row maxima, read at the arg-max (cheaper than a max-reduce)
        np.subtract(logits, m[:, None], out=logits)  # shift: the max of every row is now 0
        np.add(rowbase, y, out=flat)
        np.take(lf, flat, out=zy)  # shifted z_y
        eps = label_smoothing
        # sum of every shifted logit (for eps * mean(z) in the smoothed loss)
        z_total = float(logits.sum(dtype=np.float64)) if eps else 0.0
        np.exp(logits, out=logits)
        np.matmul(logits, self._ones, out=s)  # row sums (a matrix-vector product is fastest)
        np.divide(grad_scale, s, out=r)
        np.multiply(logits, r[:, None], out=logits)  # p * grad_scale
        np.log(s, out=s)
        loss_sum = (
            float(s.sum(dtype=np.float64))
            - (1.0 - eps) * float(zy.sum(dtype=np.float64))
            - eps * z_total / self.n_classes
        )
        if eps:
            np.subtract(logits, eps * grad_scale / self.n_classes, out=logits)
        np.take(lf, flat, out=zy)
        zy -= (1.0 - eps) * grad_scale
        np.put(lf, flat, zy)  # (p - target) * grad_scale
        return loss_sum, errors
