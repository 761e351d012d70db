"""The up-front memory estimate (engine/memory.py) is an honest upper bound of what one training
run takes: never below the peak measured while training, and within twice of it, so that the
check before a study refuses what cannot fit and nothing that can."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from mlpsearch.engine import MLP, TrainConfig, memory, network, train, training
from mlpsearch.engine.memory import mlp_bytes

# (layer sizes, optimizer, weight decay, dropout, batch size, training rows, validation rows)
CONFIGS = [
    ([64, 512, 512, 10], "momentum", 0.0, 0.0, 64, 1150, 288),  # the digits, a mid network
    ([64, 2048, 10], "sgd", 0.0, 0.0, 32, 1150, 288),
    ([784, 256, 128, 10], "adam", 1e-4, 0.2, 128, 2000, 500),
    ([30, 256, 256, 256, 3], "nesterov", 0.0, 0.3, 256, 12_000, 3000),  # a training sample
    ([20, 1500, 1500, 5], "adam", 1e-3, 0.0, 16, 600, 100),  # parameters dominate
]


def measured_peak(sizes, optimizer, weight_decay, dropout, batch, n_train, n_val) -> int:
    """Bytes allocated at the peak of building and training the network for 2 epochs (numpy
    reports its arrays to tracemalloc); the data is allocated before, as a worker holds it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_train, sizes[0])).astype(np.float32)
    y = np.arange(n_train) % sizes[-1]
    Xv = rng.normal(size=(n_val, sizes[0])).astype(np.float32)
    yv = np.arange(n_val) % sizes[-1]
    config = TrainConfig(
        epochs=2,
        batch_size=batch,
        optimizer=optimizer,
        learning_rate=0.01,
        weight_decay=weight_decay,
        dropout=dropout,
    )
    gc.collect()
    tracemalloc.start()
    try:
        model = MLP(sizes, "relu", seed=0)
        train(model, X, y, Xv, yv, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[1]}-{'x'.join(map(str, c[0]))}")
def test_the_estimate_bounds_the_measured_peak_closely(config):
    sizes, optimizer, weight_decay, dropout, batch, n_train, n_val = config
    peak = measured_peak(*config)
    estimate = mlp_bytes(
        sizes,
        batch,
        n_train,
        optimizer=optimizer,
        weight_decay=weight_decay > 0,
        dropout=dropout > 0,
        n_val=n_val,
    )
    assert peak <= estimate <= 2 * peak, (peak, estimate, estimate / peak)


def test_the_estimate_follows_the_engine_constants():
    assert memory.EVAL_ROWS == network._EVAL_ROWS
    assert memory.TRAIN_EVAL_ROWS == training.TRAIN_EVAL_ROWS


def test_a_network_beyond_any_machine_is_estimated_by_its_parameters():
    """Two hidden layers of 60000 units: 3.6e9 parameters, each held three times by momentum
    training (weights, gradients, velocity) in float32: about 40 GiB, and more with Adam."""
    sizes = [64, 60000, 60000, 10]
    params = memory.mlp_parameters(sizes)
    momentum = mlp_bytes(sizes, 64, 1150, optimizer="momentum", weight_decay=False, dropout=False)
    assert 3 * 4 * params <= momentum <= 1.05 * 3 * 4 * params
    assert mlp_bytes(sizes, 64, 1150) > 2 * momentum  # Adam and weight decay: 7 copies
