"""Activations: derivatives against central differences, stability, and the registry contract."""

import numpy as np
import pytest

from mlpsearch.engine.activations import ACTIVATIONS, get_activation

NAMES = sorted(ACTIVATIONS)

# Ordinary points plus awkward ones: around 0, moderately and very large magnitudes.
POINTS = np.array(
    [-1000.0, -40.0, -20.0, -5.0, -1.3, -0.5, -1e-3, 1e-3, 0.5, 1.3, 5.0, 20.0, 40.0, 1000.0]
)


def numeric_derivative(act, z, h=1e-6):
    return (act.forward(z + h) - act.forward(z - h)) / (2 * h)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_central_differences(name):
    act = ACTIVATIONS[name]
    z = POINTS.copy()
    a = act.forward(z)
    analytic = act.derivative(z, a)
    numeric = numeric_derivative(act, z)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_at_zero(name):
    act = ACTIVATIONS[name]
    z = np.zeros(3)
    d = act.derivative(z, act.forward(z))
    expected = {"relu": 0.0, "leaky_relu": ACTIVATIONS["leaky_relu"].slope}
    if name in expected:
        # kink: the value is a convention (documented on the class), not a limit
        np.testing.assert_array_equal(d, expected[name])
    else:
        # elu is C1 but not C2 at 0: the central difference is off by ~h/4 there
        np.testing.assert_allclose(d, numeric_derivative(act, z), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_large_magnitudes(name, dtype):
    act = ACTIVATIONS[name]
    z = np.array([-1000.0, -100.0, 100.0, 1000.0], dtype=dtype)
    # any overflow, division by zero or invalid operation fails the test (underflow to 0 is fine)
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        a = act.forward(z)
        d = act.derivative(z, a)
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))
    assert a.dtype == dtype and d.dtype == dtype


def test_known_values_at_extremes():
    z = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(ACTIVATIONS["sigmoid"].forward(z), [0.0, 1.0])
    np.testing.assert_array_equal(ACTIVATIONS["softplus"].forward(z), [0.0, 1000.0])
    np.testing.assert_array_equal(
        ACTIVATIONS["softplus"].derivative(z, ACTIVATIONS["softplus"].forward(z)), [0.0, 1.0]
    )
    np.testing.assert_array_equal(ACTIVATIONS["elu"].forward(z), [-1.0, 1000.0])
    np.testing.assert_array_equal(ACTIVATIONS["gelu"].forward(z), [-0.0, 1000.0])
    # sigmoid keeps relative precision deep in the left tail (no 1 - (1 - e) cancellation)
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"].forward(np.array([-30.0])), np.exp(-30.0))


def test_gelu_is_the_tanh_approximation():
    z = np.linspace(-4, 4, 17)
    k = np.sqrt(2 / np.pi)
    expected = 0.5 * z * (1 + np.tanh(k * (z + 0.044715 * z**3)))
    np.testing.assert_allclose(ACTIVATIONS["gelu"].forward(z), expected, rtol=1e-12)


# ---------------------------------------------------------------- registry contract


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_registry_contract(name, dtype):
    """Every entry: named as registered, keeps shape and dtype, honours out= and work=,
    and backward(z, a, g) == g * derivative(z, a)."""
    act = get_activation(name)
    assert act.name == name
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 5)).astype(dtype) * 3
    a = act.forward(z)
    assert a.shape == z.shape and a.dtype == dtype
    assert a is not z
    out, work = np.empty_like(z), np.empty_like(z)
    z_before = z.copy()
    res = act.forward(z, out=out, work=work)
    assert res is out
    np.testing.assert_array_equal(z, z_before)  # input untouched
    np.testing.assert_array_equal(out, a)
    d = act.derivative(z, a)
    assert d.shape == z.shape and d.dtype == dtype
    out_d = np.empty_like(z)
    assert act.derivative(z, a, out=out_d) is out_d
    np.testing.assert_array_equal(out_d, d)
    g = rng.standard_normal((6, 5)).astype(dtype)
    expected = g * d
    res = act.backward(z, a, g, np.empty_like(z))
    assert res is g
    np.testing.assert_allclose(g, expected, rtol=1e-6)


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match="relu"):
        get_activation("swish")
