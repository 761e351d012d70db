"""The network: gradient checks, fused loss, initializers, dead units, dtypes, save and load."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mlpsearch.engine import ACTIVATIONS, INITIALIZERS, MLP, gradcheck, softmax_cross_entropy
from mlpsearch.engine.losses import FusedSoftmaxCE, log_softmax


def blobs(n=40, n_in=5, n_classes=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(dtype)
    y = rng.integers(0, n_classes, n)
    return X, y


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden", [[7], [6, 5], [6, 5, 4]])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_gradcheck_whole_network(activation, hidden, weight_decay):
    X, y = blobs(n=9, n_in=4, n_classes=3, seed=len(hidden))
    model = MLP([4, *hidden, 3], activation, dtype="float64", seed=3, bias_init=0.05)
    err = gradcheck(model, X, y, weight_decay=weight_decay)
    assert err < 1e-6


@pytest.mark.parametrize("label_smoothing", [0.1, 0.5])
def test_gradcheck_with_label_smoothing(label_smoothing):
    """The smoothed target changes both the loss and the fused gradient p - target."""
    X, y = blobs(n=9, n_in=4, n_classes=3, seed=5)
    model = MLP([4, 6, 5, 3], "gelu", dtype="float64", seed=4)
    assert gradcheck(model, X, y, weight_decay=0.01, label_smoothing=label_smoothing) < 1e-6


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The check must be able to fail: break tanh's derivative and watch it."""
    tanh = ACTIVATIONS["tanh"]
    X, y = blobs(n=9, n_in=4, n_classes=3)
    model = MLP([4, 6, 3], "tanh", dtype="float64", seed=1)
    monkeypatch.setattr(type(tanh), "derivative", lambda self, z, a, out=None: 1 - a**3)
    assert gradcheck(model, X, y) > 1e-3


def test_gradcheck_mixed_activations_and_float32_model():
    X, y = blobs(n=8, n_in=4, n_classes=3)
    model = MLP([4, 5, 5, 3], ["gelu", "elu"], seed=2)  # float32: checked on a float64 copy
    before = model.params.copy()
    assert gradcheck(model, X, y, weight_decay=0.01) < 1e-6
    np.testing.assert_array_equal(model.params, before)  # the model itself is untouched


# ---------------------------------------------------------------- fused softmax cross-entropy


def test_softmax_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)) * 3
    y = rng.integers(0, 4, 6)
    loss, grad = softmax_cross_entropy(z, y)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), y])), rel=1e-12)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(grad, (p - onehot) / 6, rtol=1e-12, atol=1e-15)
    # central differences of the loss with respect to each logit
    num = np.empty_like(z)
    h = 1e-6
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        num[idx] = (softmax_cross_entropy(zp, y)[0] - softmax_cross_entropy(zm, y)[0]) / (2 * h)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothed_cross_entropy_value_and_gradient(eps):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((6, 4)) * 3
    y = rng.integers(0, 4, 6)
    loss, grad = softmax_cross_entropy(z, y, label_smoothing=eps)
    target = np.full((6, 4), eps / 4)
    target[np.arange(6), y] += 1 - eps
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean((target * np.log(p)).sum(axis=1)), rel=1e-12)
    np.testing.assert_allclose(grad, (p - target) / 6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)  # targets still sum to 1


def test_label_smoothing_zero_is_the_plain_loss_bit_for_bit():
    """eps = 0 takes exactly the unsmoothed arithmetic: old trials re-run identically."""
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((9, 5)) * 4).astype(np.float32)
    y = rng.integers(0, 5, 9)
    plain, smoothed = z.copy(), z.copy()
    loss_a = FusedSoftmaxCE(9, 5, np.float32)(plain, y, 0.25)
    loss_b = FusedSoftmaxCE(9, 5, np.float32)(smoothed, y, 0.25, 0.0)
    assert loss_a == loss_b
    np.testing.assert_array_equal(plain, smoothed)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]])
    y = np.array([0, 0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, grad = softmax_cross_entropy(z, y)
    assert loss == pytest.approx(1000.0)  # row 0 costs 0, row 1 costs 2000
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(log_softmax(z)[0], [0.0, -1000.0, -2000.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_loss_matches_reference(dtype, eps):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((7, 5)) * 4).astype(dtype)
    y = rng.integers(0, 5, 7)
    ref_loss, ref_grad = softmax_cross_entropy(z.astype(np.float64), y, label_smoothing=eps)
    fused = FusedSoftmaxCE(10, 5, dtype)
    logits = z.copy()
    loss_sum, errors = fused(logits, y, 1.0 / 7, eps)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_sum / 7 == pytest.approx(ref_loss, rel=tol)
    np.testing.assert_allclose(logits, ref_grad, rtol=tol, atol=tol)
    assert errors == int(np.count_nonzero(np.argmax(z, axis=1) != y))


def test_loss_and_grads_matches_forward():
    X, y = blobs()
    model = MLP([5, 8, 3], "tanh", dtype="float64", seed=0)
    loss, wg, bg = model.loss_and_grads(X, y)
    assert loss == pytest.approx(softmax_cross_entropy(model.forward(X), y)[0], rel=1e-12)
    assert [g.shape for g in wg] == [w.shape for w in model.weights]
    assert [g.shape for g in bg] == [b.shape for b in model.biases]
    # L2 on weights only: the bias gradients do not change, the weight gradients gain wd * W
    loss2, wg2, bg2 = model.loss_and_grads(X, y, weight_decay=0.5)
    penalty = 0.25 * sum(float((w**2).sum()) for w in model.weights)
    assert loss2 == pytest.approx(loss + penalty, rel=1e-12)
    for a, b in zip(bg, bg2, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b, w in zip(wg, wg2, model.weights, strict=True):
        np.testing.assert_allclose(b, a + 0.5 * w, rtol=1e-12)


# ---------------------------------------------------------------- structure, initializers


def test_structure_and_parameter_views():
    model = MLP([784, 256, 128, 10], seed=0)
    assert model.layer_sizes == [784, 256, 128, 10]
    assert model.activations == ["relu", "relu"]
    assert [w.shape for w in model.weights] == [(784, 256), (256, 128), (128, 10)]
    assert [b.shape for b in model.biases] == [(256,), (128,), (10,)]
    assert all(w.dtype == np.float32 for w in model.weights + model.biases)
    assert all(np.shares_memory(w, model.params) for w in model.weights + model.biases)
    assert model.params.size == 784 * 256 + 256 * 128 + 128 * 10 + 256 + 128 + 10
    arch = model.architecture()
    assert json.loads(json.dumps(arch)) == arch
    assert set(arch) == {
        "layer_sizes",
        "activations",
        "init",
        "init_scale",
        "bias_init",
        "dtype",
        "seed",
    }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layer_sizes": [5]}, "layer_sizes"),
        ({"layer_sizes": [5, 0, 3]}, "layer_sizes"),
        ({"activation": "swish"}, "allowed"),
        ({"activation": ["relu", "tanh"]}, "one name per hidden layer"),
        ({"init": "orthogonal"}, "allowed"),
        ({"dtype": "float16"}, "dtype"),
        ({"init_scale": 0.0}, "init_scale"),
    ],
)
def test_bad_construction_arguments(kwargs, match):
    args = {"layer_sizes": [5, 4, 3], **kwargs}
    with pytest.raises(ValueError, match=match):
        MLP(args.pop("layer_sizes"), **args)


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_contract(name):
    """Every initializer: shape, dtype, zero mean, a spread that init_scale multiplies,
    deterministic for a seed, the same weights in float32 and float64."""
    init = INITIALIZERS[name]
    fan_in, fan_out = 400, 300
    base = init(fan_in, fan_out, np.random.default_rng(0), scale=1.0, dtype="float64")
    assert base.shape == (fan_in, fan_out) and base.dtype == np.float64
    assert 0 < base.std() < 1 and abs(base.mean()) < 0.01 * base.std()
    for scale in (1.0, 2.5):
        w = init(fan_in, fan_out, np.random.default_rng(0), scale=scale, dtype="float32")
        assert w.shape == (fan_in, fan_out) and w.dtype == np.float32
        np.testing.assert_allclose(w, scale * base, rtol=1e-6, atol=1e-7)
    a = init(fan_in, fan_out, np.random.default_rng(7))
    b = init(fan_in, fan_out, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name, std",
    [
        ("he", lambda fan_in, fan_out: np.sqrt(2 / fan_in)),
        ("glorot", lambda fan_in, fan_out: np.sqrt(2 / (fan_in + fan_out))),
        ("lecun", lambda fan_in, fan_out: np.sqrt(1 / fan_in)),
    ],
)
def test_initializer_has_its_documented_std(name, std):
    fan_in, fan_out = 400, 300
    for scale in (1.0, 2.5):
        w = INITIALIZERS[name](fan_in, fan_out, np.random.default_rng(0), scale=scale)
        assert w.std() == pytest.approx(std(fan_in, fan_out) * scale, rel=0.01)


def test_bias_init_and_seed():
    a = MLP([5, 4, 3], bias_init=-2.0, seed=1)
    assert all(np.all(b == -2.0) for b in a.biases)
    b = MLP([5, 4, 3], bias_init=-2.0, seed=1)
    c = MLP([5, 4, 3], bias_init=-2.0, seed=2)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


# ---------------------------------------------------------------- dtypes, forward, predict


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_dtype_and_chunking(dtype):
    X, _ = blobs(n=2500, n_in=6)  # more rows than one evaluation chunk
    model = MLP([6, 9, 4], "sigmoid", dtype=dtype, seed=0)
    logits = model.forward(X)
    assert logits.shape == (2500, 4) and logits.dtype == np.dtype(dtype)
    ref = np.asarray(X, dtype=dtype)
    z = ref @ model.weights[0] + model.biases[0]
    ref = 1 / (1 + np.exp(-z)) @ model.weights[1] + model.biases[1]
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(logits, ref, rtol=tol, atol=tol)
    pred = model.predict(X)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, np.argmax(logits, axis=1))


def test_float32_and_float64_models_agree():
    X, y = blobs(n=30, n_in=5)
    m32 = MLP([5, 8, 3], "gelu", seed=4)
    m64 = MLP([5, 8, 3], "gelu", seed=4, dtype="float64")
    np.testing.assert_allclose(m32.params, m64.params, rtol=1e-7)
    l32, w32, _ = m32.loss_and_grads(X, y)
    l64, w64, _ = m64.loss_and_grads(X, y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    assert w32[0].dtype == np.float32 and w64[0].dtype == np.float64
    np.testing.assert_allclose(w32[0], w64[0], rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- dead units


def test_dead_fraction_is_one_for_strongly_negative_biases():
    X, y = blobs(n=200, n_in=10, seed=5)
    model = MLP([10, 32, 32, 32, 3], "relu", bias_init=-10.0, seed=0)
    assert model.dead_fraction(X) == [1.0, 1.0, 1.0]
    _, _, dead = model.evaluate(X, y)
    assert dead == [1.0, 1.0, 1.0]
    _, wg, bg = model.loss_and_grads(X, y)  # ReLU'(0) = 0: no gradient reaches a dead layer
    assert not np.any(wg[0]) and not np.any(bg[0])


def test_dead_fraction_near_zero_for_healthy_network():
    X, _ = blobs(n=500, n_in=10, seed=6)
    model = MLP([10, 64, 64, 64, 3], "relu", seed=0)
    assert all(d <= 0.05 for d in model.dead_fraction(X))
    # non-ReLU activations practically never output exactly 0
    assert MLP([10, 16, 3], "tanh").dead_fraction(X) == [0.0]


# ---------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    model = MLP([6, 5, 4, 3], ["elu", "tanh"], init="glorot", init_scale=1.5, seed=9)
    model.params += 0.125  # not what the seed alone would give
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.architecture() == model.architecture()
    np.testing.assert_array_equal(loaded.params, model.params)
    X, _ = blobs(n=10, n_in=6)
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))
    assert all(np.shares_memory(w, loaded.params) for w in loaded.weights)


def _rewrite(src, dst, change):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.update(W0=a["W0"][:, :-1]),  # wrong shape
        lambda a: a.pop("b1"),  # missing array
        lambda a: a.update(extra=np.zeros(3)),  # unexpected array
        lambda a: a.update(W1=a["W1"].astype(np.float64)),  # wrong dtype
        lambda a: a.update(W0=np.full_like(a["W0"], np.nan)),  # non-finite
        lambda a: a.update(format=np.array("something-else")),  # foreign marker
        lambda a: a.update(architecture=np.array("{not json")),  # broken architecture
        lambda a: a.update(architecture=np.array(json.dumps({"layer_sizes": [6, 3]}))),
        lambda a: a.update(W0=np.array([{"x": 1}], dtype=object)),  # a pickle inside
    ],
)
def test_tampered_file_rejected(tmp_path, change):
    model = MLP([6, 5, 3], seed=0)
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    model.save(good)
    _rewrite(good, bad, change)
    with pytest.raises(ValueError) as info:
        MLP.load(bad)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg


def test_foreign_files_rejected(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    truncated = tmp_path / "truncated.npz"
    MLP([4, 2, 3]).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    for path in (foreign, text, truncated):
        with pytest.raises(ValueError, match="not a valid mlpsearch model file") as info:
            MLP.load(path)
        assert "\n" not in str(info.value)
    assert zipfile.is_zipfile(foreign)


# ---------------------------------------------------------------- dependency direction


def test_import_engine_loads_no_search_dependencies():
    code = (
        "import sys, mlpsearch.engine\n"
        "bad = [m for m in ('optuna', 'pandas', 'matplotlib', 'joblib', 'scipy', 'sklearn',"
        " 'torch', 'threadpoolctl') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
