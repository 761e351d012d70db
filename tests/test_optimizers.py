"""Optimizers against hand-computed steps, the registry contract, and the schedules."""

import math

import numpy as np
import pytest

from mlpsearch.engine import OPTIMIZERS, SCHEDULES, make_optimizer

W0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.5, 1.0, -2.0])
G2 = np.array([-1.0, 0.25, 0.5])
LR = 0.1


def run(name, grads, lr=LR, **hyper):
    w = W0.copy()
    opt = make_optimizer(name, [w], **hyper)
    for g in grads:
        opt.step([g.copy()], lr)
    return w


def test_sgd_by_hand():
    np.testing.assert_allclose(run("sgd", [G1, G2]), W0 - LR * G1 - LR * G2, rtol=1e-15)


def test_momentum_by_hand():
    mu = 0.9
    v1 = -LR * G1
    v2 = mu * v1 - LR * G2
    np.testing.assert_allclose(run("momentum", [G1, G2], momentum=mu), W0 + v1 + v2, rtol=1e-15)
    # momentum 0 is plain SGD
    np.testing.assert_array_equal(run("momentum", [G1, G2], momentum=0.0), run("sgd", [G1, G2]))


def test_nesterov_by_hand():
    mu = 0.9
    v1 = -LR * G1
    w1 = W0 + mu * v1 - LR * G1
    v2 = mu * v1 - LR * G2
    w2 = w1 + mu * v2 - LR * G2
    np.testing.assert_allclose(run("nesterov", [G1, G2], momentum=mu), w2, rtol=1e-15)


def test_adam_by_hand():
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = s = np.zeros(3)
    w = W0.copy()
    for t, g in enumerate([G1, G2], start=1):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * g * g
        w = w - LR * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)
    np.testing.assert_allclose(run("adam", [G1, G2], beta1=b1, beta2=b2, eps=eps), w, rtol=1e-14)
    # first Adam step moves every coordinate by ~lr against the gradient's sign
    np.testing.assert_allclose(run("adam", [G1]), W0 - LR * np.sign(G1), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_contract(name, dtype):
    """Every optimizer: updates in place (same arrays, same dtype), leaves gradients alone,
    is deterministic, and minimises a simple quadratic."""
    target = np.array([3.0, -1.0, 2.0], dtype=dtype)
    w = np.zeros(3, dtype=dtype)
    b = np.zeros((2, 2), dtype=dtype)
    opt = make_optimizer(name, [w, b])
    ids = (id(w), id(b))
    for _ in range(300):
        gw = (w - target).copy()
        gb = b - 1.0
        saved = gw.copy()
        opt.step([gw, gb], 0.05)
        np.testing.assert_array_equal(gw, saved)
    assert (id(w), id(b)) == ids and w.dtype == dtype and b.dtype == dtype
    np.testing.assert_allclose(w, target, atol=0.05)
    np.testing.assert_allclose(b, 1.0, atol=0.05)


def test_unknown_optimizer_lists_every_registered_name():
    with pytest.raises(ValueError, match="allowed: " + ", ".join(OPTIMIZERS)):
        make_optimizer("rmsprop", [np.zeros(2)])


# ---------------------------------------------------------------- schedules

KW = {"epochs": 20, "step_size": 5, "gamma": 0.5}


def test_constant_schedule():
    assert [SCHEDULES["constant"](0.1, e, **KW) for e in (1, 7, 20)] == [0.1, 0.1, 0.1]


def test_step_schedule():
    lrs = [SCHEDULES["step"](0.1, e, **KW) for e in range(1, 21)]
    assert lrs[:5] == [0.1] * 5
    assert lrs[5:10] == [0.05] * 5
    assert lrs[19] == pytest.approx(0.1 * 0.5**3)


def test_cosine_schedule():
    f = SCHEDULES["cosine"]
    assert f(0.1, 1, **KW) == 0.1
    assert f(0.1, 11, **KW) == pytest.approx(0.05)  # half-way
    assert f(0.1, 20, **KW) == pytest.approx(0.05 * (1 + math.cos(math.pi * 19 / 20)))
    lrs = [f(0.1, e, **KW) for e in range(1, 21)]
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:], strict=False))


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_contract(name):
    lrs = [SCHEDULES[name](0.2, e, **KW) for e in range(1, 21)]
    assert lrs[0] == 0.2
    assert all(0 < lr <= 0.2 for lr in lrs)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
