"""Training loop: determinism, divergence, callbacks, early stopping, configuration, memory,
and one run on real data."""

import json
import math
import tracemalloc

import numpy as np
import pytest

from mlpsearch.engine import (
    MLP,
    OPTIMIZERS,
    Diverged,
    EpochRecord,
    TrainConfig,
    make_optimizer,
    train,
)
from mlpsearch.engine.training import Trainer


def make_data(n=600, n_in=12, n_classes=4, seed=0, dtype=np.float32):
    """Gaussian class clusters, learnable but not trivially separable."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, n_in)) * 1.5
    y = rng.integers(0, n_classes, n)
    X = (centers[y] + rng.standard_normal((n, n_in))).astype(dtype)
    return X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4 :], y[n * 3 // 4 :]


def run(config, model_kwargs=None, data=None, callback=None):
    Xt, yt, Xv, yv = data or make_data()
    model = MLP([Xt.shape[1], 16, 8, 4], **(model_kwargs or {}))
    history = train(model, Xt, yt, Xv, yv, config, callback=callback)
    return model, history


def test_training_learns_and_records_every_epoch():
    model, h = run(TrainConfig(epochs=8, batch_size=32, learning_rate=0.05))
    assert [r.epoch for r in h.records] == list(range(1, 9))
    assert h.stop_reason == "completed"
    assert h.val_error[-1] < 0.15 and h.train_loss[-1] < h.train_loss[0]
    r = h.records[-1]
    assert isinstance(r, EpochRecord) and len(r.dead_fraction) == 2
    assert r.seconds > 0 and r.learning_rate == 0.05
    assert h.best_val_error == min(h.val_error)
    assert h.records[h.best_epoch - 1].val_error == h.best_val_error
    d = h.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["val_error"] == h.val_error and d["stop_reason"] == "completed"
    # the validation numbers are those of one evaluation pass of the final model
    Xt, yt, Xv, yv = make_data()
    assert model.evaluate(Xv, yv)[1] == r.val_error


def history_without_seconds(h):
    d = h.to_dict()
    del d["seconds"]
    return d


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=3, batch_size=50, seed=5),  # 450 rows: a smaller last batch
        TrainConfig(
            epochs=3,
            batch_size=32,
            optimizer="adam",
            learning_rate=0.01,
            dropout=0.3,
            weight_decay=1e-3,
            schedule="cosine",
            seed=1,
        ),
    ],
)
def test_determinism_bitwise(config, dtype):
    kw = {"seed": 3, "dtype": dtype}
    m1, h1 = run(config, kw)
    m2, h2 = run(config, kw)
    assert m1.params.tobytes() == m2.params.tobytes()
    assert history_without_seconds(h1) == history_without_seconds(h2)
    # a different training seed changes the minibatch order and so the result
    m3, _ = run(TrainConfig(**{**config.to_dict(), "seed": config.seed + 1}), kw)
    assert m1.params.tobytes() != m3.params.tobytes()


def test_diverged_for_huge_learning_rate():
    with pytest.raises(Diverged) as info:
        run(TrainConfig(epochs=5, learning_rate=1e4))
    exc = info.value
    assert exc.epoch == 1
    assert exc.last_finite_loss is None or math.isfinite(exc.last_finite_loss)
    msg = str(exc)
    assert "\n" not in msg and "diverged in epoch 1" in msg and "last finite loss" in msg


def test_diverged_for_exploding_loss():
    # a loss that stays finite but grows far past the first minibatch's counts too
    data = make_data()
    with pytest.raises(Diverged) as info:
        run(TrainConfig(epochs=20, learning_rate=3.0, max_loss_factor=2.0), data=data)
    assert math.isfinite(info.value.loss) or math.isnan(info.value.loss)
    assert info.value.last_finite_loss is not None


def test_callback_sees_every_record_and_can_stop():
    seen = []

    def callback(record):
        seen.append(record)
        return record.epoch == 3

    _, h = run(TrainConfig(epochs=10), callback=callback)
    assert h.stop_reason == "callback" and len(h.records) == 3 and seen == h.records


def test_callback_exception_propagates():
    class Pruned(Exception):
        pass

    def callback(record):
        raise Pruned

    with pytest.raises(Pruned):
        run(TrainConfig(epochs=3), callback=callback)


def test_early_stopping_with_patience():
    # learning rate so small that validation error does not improve epoch after epoch
    _, h = run(TrainConfig(epochs=50, learning_rate=1e-9, momentum=0.0, patience=3))
    assert h.stop_reason == "early_stopping"
    assert len(h.records) == h.best_epoch + 3
    _, h2 = run(TrainConfig(epochs=6, learning_rate=1e-9, momentum=0.0))
    assert h2.stop_reason == "completed" and len(h2.records) == 6


def test_schedule_learning_rates_recorded():
    _, h = run(TrainConfig(epochs=4, schedule="step", step_size=2, gamma=0.5))
    assert [r.learning_rate for r in h.records] == [0.05, 0.05, 0.025, 0.025]


def test_dead_units_visible_in_history():
    _, h = run(TrainConfig(epochs=2), {"bias_init": -10.0})
    assert h.records[-1].dead_fraction == (1.0, 1.0)


def test_dropout_is_seeded_and_off_at_evaluation():
    Xt, yt, Xv, yv = make_data()
    model, h = run(TrainConfig(epochs=3, dropout=0.5))
    np.testing.assert_array_equal(model.forward(Xv), model.forward(Xv))  # no randomness
    assert model.evaluate(Xv, yv)[1] == h.records[-1].val_error
    assert h.val_error[-1] < 0.3


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", True),
        ("optimizer", "rmsprop"),
        ("schedule", "linear"),
        ("learning_rate", -1.0),
        ("learning_rate", float("nan")),
        ("momentum", 1.0),
        ("dropout", 1.0),
        ("patience", 0),
        ("gamma", 0.0),
        ("weight_decay", -0.1),
        ("max_loss_factor", 1.0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_config_dict_round_trip():
    cfg = TrainConfig(epochs=3, optimizer="nesterov", patience=2, dropout=0.1)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert TrainConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown key.*lr"):
        TrainConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="allowed|must be"):
        TrainConfig.from_dict({"optimizer": "lbfgs"})


def test_bad_data_rejected():
    Xt, yt, Xv, yv = make_data()
    model = MLP([12, 8, 4])
    with pytest.raises(ValueError, match="X_train"):
        train(model, Xt[:, :5], yt, Xv, yv, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="y_val"):
        train(model, Xt, yt, Xv, yv + 10, TrainConfig(epochs=1))


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_batch_loop_allocates_no_arrays(optimizer):
    """A whole training pass allocates nothing array-sized: every minibatch array is
    preallocated. (numpy's own ufunc casting scratch, a few KB, is all that remains.)"""
    Xt, yt, _, _ = make_data(n=800, n_in=64)
    model = MLP([64, 256, 128, 4], seed=0)
    cfg = TrainConfig(
        batch_size=128, optimizer=optimizer, weight_decay=1e-4, dropout=0.1, label_smoothing=0.1
    )
    trainer = Trainer(model, Xt, yt, cfg)  # 600 rows: 4 full batches and one of 88
    trainer.run_epoch(1)  # warm-up: lazily created buffers
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        trainer.run_epoch(2)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    smallest_array = 88 * 128 * 4  # the tail batch's second-layer activations, in bytes
    assert peak - base < smallest_array // 2
    assert current - base < 1024


def test_memory_does_not_grow_across_epochs():
    Xt, yt, Xv, yv = make_data(n=2000, n_in=32)
    model = MLP([32, 64, 32, 4], seed=0)
    used = []

    def callback(record):
        used.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        train(model, Xt, yt, Xv, yv, TrainConfig(epochs=8, dropout=0.2), callback=callback)
    finally:
        tracemalloc.stop()
    # after the first epochs (buffers created), only the small EpochRecords accumulate
    assert used[-1] - used[2] < 8 * 1024


# ---------------------------------------------------------------- real data


def _digits():
    data = pytest.importorskip("mlpsearch.engine.data")
    try:
        return data.load_dataset("digits")
    except Exception as exc:  # the data layer is another module's concern
        pytest.skip(f"digits dataset unavailable: {exc}")


def test_real_digits_one_hidden_layer():
    ds = _digits()
    model = MLP([ds.n_features, 64, ds.n_classes], "relu", seed=0)
    cfg = TrainConfig(epochs=30, batch_size=32, learning_rate=0.05, momentum=0.9, seed=0)
    h = train(model, ds.X_train, ds.y_train, ds.X_val, ds.y_val, cfg)
    assert h.best_val_error < 0.06
    assert (model.predict(ds.X_test) != ds.y_test).mean() < 0.08


def test_real_digits_matches_sklearn():
    """Same architecture, optimizer, batch, epochs: the validation errors agree within noise
    (averaged over seeds; the validation set has only ~290 rows, so one image is ~0.35%)."""
    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    import warnings

    ds = _digits()
    ours, theirs = [], []
    for seed in range(3):
        model = MLP([ds.n_features, 64, ds.n_classes], "relu", init="glorot", seed=seed)
        cfg = TrainConfig(
            epochs=30,
            batch_size=32,
            learning_rate=0.05,
            momentum=0.9,
            weight_decay=1e-4 / 32,  # scikit-learn divides alpha by the batch size
            seed=seed,
        )
        h = train(model, ds.X_train, ds.y_train, ds.X_val, ds.y_val, cfg)
        ours.append(h.val_error[-1])
        clf = sklearn_nn.MLPClassifier(
            hidden_layer_sizes=(64,),
            activation="relu",
            solver="sgd",
            batch_size=32,
            learning_rate_init=0.05,
            momentum=0.9,
            nesterovs_momentum=False,
            alpha=1e-4,
            max_iter=30,
            shuffle=True,
            random_state=seed,
            tol=0.0,
            n_iter_no_change=1000,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after max_iter epochs
            clf.fit(ds.X_train, ds.y_train)
        theirs.append(float((clf.predict(ds.X_val) != ds.y_val).mean()))
    assert abs(np.mean(ours) - np.mean(theirs)) < 0.02, (ours, theirs)


def test_config_normalises_numpy_numbers():
    cfg = TrainConfig(epochs=np.int64(3), learning_rate=np.float32(0.5), patience=np.int32(2))
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert type(d["epochs"]) is int and type(d["learning_rate"]) is float
    assert TrainConfig(learning_rate=1).learning_rate == 1.0


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_loop_equals_textbook_steps(optimizer):
    """The fast loop (gradients pre-multiplied by the learning rate for the SGD family, flat
    parameter vector, reused buffers) performs exactly the textbook updates: replay the same
    minibatches with loss_and_grads + optimizer.step on per-layer arrays."""
    Xt, yt, _, _ = make_data(n=200, n_in=6)
    cfg = TrainConfig(
        epochs=1, batch_size=32, optimizer=optimizer, learning_rate=0.05, weight_decay=1e-3
    )
    fast = MLP([6, 7, 5, 4], "tanh", dtype="float64", seed=1)
    slow = fast.clone()
    trainer = Trainer(fast, Xt, yt, cfg)
    order = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[0])
    perm = np.arange(len(Xt))
    order.shuffle(perm)  # the order the trainer will draw
    trainer.run_epoch(1)

    params = [w.copy() for w in slow.weights] + [b.copy() for b in slow.biases]
    opt = make_optimizer(optimizer, params, momentum=cfg.momentum)
    for s in range(0, len(Xt), cfg.batch_size):
        idx = perm[s : s + cfg.batch_size]
        for dst, src in zip(slow.weights + slow.biases, params, strict=True):
            dst[...] = src
        _, wg, bg = slow.loss_and_grads(Xt[idx], yt[idx], weight_decay=cfg.weight_decay)
        opt.step(wg + bg, cfg.learning_rate)
    expected = np.concatenate([p.ravel() for p in params])
    got = np.concatenate([p.ravel() for p in fast.weights + fast.biases])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_small_and_odd_inputs():
    Xt, yt, Xv, yv = make_data(n=40)
    model = MLP([12, 5, 4], seed=0)
    h = train(model, Xt, yt, Xv, yv, TrainConfig(epochs=2, batch_size=1000))  # batch > n
    assert len(h.records) == 2
    assert model.forward(np.empty((0, 12))).shape == (0, 4)
    np.testing.assert_array_equal(model.predict(Xv.astype(np.float64)), model.predict(Xv))


# ---------------------------------------------------------------- train error


def test_train_error_is_the_models_error_in_evaluation_mode():
    """train_loss / train_error are the final weights' loss and error on the training part with
    dropout off, not the running minibatch averages (kept as batch_loss / batch_error)."""
    Xt, yt, Xv, yv = make_data(n=800)
    model = MLP([12, 32, 4], seed=0)
    h = train(model, Xt, yt, Xv, yv, TrainConfig(epochs=3, dropout=0.5, learning_rate=0.1))
    last = h.records[-1]
    loss, error, _ = model.evaluate(Xt, yt)
    assert last.train_error == pytest.approx(error, abs=1e-12)
    assert last.train_loss == pytest.approx(loss, rel=1e-5)
    # with half the units dropped, the running average is visibly worse than the model
    assert last.batch_loss > last.train_loss
    assert h.to_dict()["batch_error"] == [r.batch_error for r in h.records]


def test_train_error_on_a_fixed_subset_of_a_large_training_part():
    """More rows than TRAIN_EVAL_ROWS: a fixed sample of exactly that many, the same rows
    whatever the trial's seed, in their original order."""
    from mlpsearch.engine.training import TRAIN_EVAL_ROWS

    Xt, yt, _, _ = make_data(n=(TRAIN_EVAL_ROWS + 3000) * 4 // 3, n_in=4)
    Xt[:, 0] = np.arange(len(Xt))  # the row number, to identify the sample
    a = Trainer(MLP([4, 3, 4]), Xt, yt, TrainConfig(seed=1))
    b = Trainer(MLP([4, 3, 4]), Xt, yt, TrainConfig(seed=2))
    rows = a.X_eval[:, 0].astype(int)
    assert len(rows) == TRAIN_EVAL_ROWS == len(np.unique(rows))
    assert np.all(np.diff(rows) > 0) and rows[-1] > TRAIN_EVAL_ROWS  # spread over the part
    np.testing.assert_array_equal(a.X_eval, b.X_eval)
    np.testing.assert_array_equal(a.y_eval, yt[rows])
    loss, error, _ = a.model.evaluate(Xt[rows], yt[rows])
    assert a.evaluate_train() == pytest.approx((loss, error), rel=1e-6)


def test_train_evaluation_allocates_no_arrays():
    Xt, yt, _, _ = make_data(n=4000, n_in=64)
    trainer = Trainer(MLP([64, 256, 128, 4], seed=0), Xt, yt, TrainConfig(dropout=0.1))
    trainer.evaluate_train()  # warm-up: the evaluation workspace
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        trainer.evaluate_train()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 1000 * 128 * 4 // 2  # less than half the last chunk's activations
    assert current - base < 1024


def test_label_smoothing_caps_the_confidence_it_trains_towards():
    """Trained against targets (1 - e) onehot + e / K, a network that fits its training set stops
    near p_y = 1 - e + e / K instead of driving p_y to 1; without smoothing it goes past it."""
    Xt, yt, Xv, yv = make_data(n=400, n_in=12, seed=4)
    cfg = dict(epochs=150, batch_size=30, learning_rate=0.1)
    confidence = {}
    for eps in (0.0, 0.2):
        model = MLP([12, 64, 4], "tanh", seed=0)
        train(model, Xt, yt, Xv, yv, TrainConfig(**cfg, label_smoothing=eps))
        z = model.forward(Xt).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        confidence[eps] = float(np.median(p[np.arange(len(yt)), yt]))
    assert confidence[0.0] > 0.95
    assert confidence[0.2] == pytest.approx(0.85, abs=0.02)  # 1 - 0.2 + 0.2 / 4
