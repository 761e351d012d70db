"""How fast is one training epoch of the engine? Against PyTorch, scikit-learn and raw matmul.

The workload: a 784-256-128-10 ReLU network, minibatches of 128, SGD with momentum 0.9,
float32, one BLAS thread, one epoch over Fashion-MNIST's 60,000 training images. One epoch is
about 60.4 GFLOP: forward, weight gradients, and the input gradients of layers 2 and 3 (layer 1
needs none).

In the same run it times
  (a) PyTorch on the CPU, same network, batch, optimizer and minibatch gathering, one thread;
  (b) scikit-learn's MLPClassifier, one epoch with the same settings;
  (c) a large float32 matrix multiply: the machine's single-thread FLOP rate.
and prints each time (median of the timed epochs after one warm-up epoch), the ratios, and the
engine's GFLOP/s as a fraction of (c). It also times the evaluation pass over a fixed sample of
training rows that ``train`` adds to every epoch for an honest train error (target: at most
15% of the epoch). Targets: engine <= 0.65 x PyTorch, <= 0.5 x
scikit-learn, >= 80% of the matmul rate.

torch and scikit-learn are the optional ``bench`` extra (``pip install torch==2.13.0
scikit-learn``); a missing one is reported and skipped. threadpoolctl limits every BLAS and
OpenMP pool to one thread (the engine itself never imports it).

OpenBLAS picks its kernel from the CPU unless OPENBLAS_CORETYPE says otherwise; the kernel in
use is printed, because it changes the matmul rate (and so every number here) a lot.

Usage::

    python experiments/benchmarks/engine_epoch.py [--epochs 3] [--data-dir DIR]
        [--no-torch] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mlpsearch.engine import MLP, TrainConfig
from mlpsearch.engine.training import TRAIN_EVAL_ROWS, Trainer

SIZES = [784, 256, 128, 10]
BATCH = 128
LR = 0.01
MOMENTUM = 0.9
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def epoch_gflop(n_rows: int) -> float:
    """FLOPs of one epoch: 2 per multiply-add; forward + weight gradients of every layer, input
    gradients of every layer but the first."""
    pairs = list(zip(SIZES[:-1], SIZES[1:], strict=True))
    forward = sum(i * o for i, o in pairs)
    input_grads = sum(i * o for i, o in pairs[1:])
    return 2 * n_rows * (2 * forward + input_grads) / 1e9


def read_idx(path: Path) -> np.ndarray:
    """A minimal IDX reader (gzip): magic 00 00 08 ndim, big-endian uint32 dims, uint8 data."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if raw[:3] != b"\0\0\x08":
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int(d) for d in np.frombuffer(raw, ">u4", ndim, 4)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = data_dir / "train-images-idx3-ubyte.gz"
    labels = data_dir / "train-labels-idx1-ubyte.gz"
    if not images.exists():
        raise SystemExit(
            f"{images} not found: apt-get install dataset-fashion-mnist, or pass --data-dir"
        )
    X = read_idx(images).reshape(-1, 784).astype(np.float32) / np.float32(255.0)
    y = read_idx(labels).astype(np.int64)
    return np.ascontiguousarray(X), y


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)  # warm-up
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_engine(
    X, y, epochs: int, label_smoothing: float = 0.0
) -> tuple[list[float], list[float], list[float], float]:
    """Per epoch: the training pass, then the train evaluation every epoch of ``train`` adds
    (evaluation mode on a fixed sample of TRAIN_EVAL_ROWS training rows); and once, a
    validation pass over 10,000 rows."""
    model = MLP(SIZES, "relu", init="he", dtype="float32", seed=0)
    cfg = TrainConfig(
        epochs=epochs + 1,
        batch_size=BATCH,
        optimizer="momentum",
        learning_rate=LR,
        momentum=MOMENTUM,
        label_smoothing=label_smoothing,
        seed=0,
    )
    trainer = Trainer(model, X, y, cfg)
    times, evals, rss = [], [], []
    for epoch in range(1, epochs + 2):
        t = time.perf_counter()
        loss, err, _ = trainer.run_epoch(epoch)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        train_loss, train_err = trainer.evaluate_train()
        evals.append(time.perf_counter() - t)
        rss.append(rss_mb())
        print(
            f"  engine epoch {epoch}: {times[-1]:.3f} s + train evaluation {evals[-1]:.3f} s  "
            f"minibatch loss {loss:.4f} error {err:.4f}; evaluated: loss {train_loss:.4f} "
            f"error {train_err:.4f}  RSS {rss[-1]:.1f} MB"
        )
    eval_time = _timed(lambda: model.evaluate(X[:10000], y[:10000]))
    return times[1:], evals[1:], rss, eval_time


def bench_naive_numpy(X, y) -> float:
    """One epoch of a straightforward float32 numpy loop (fancy-index gathers, a new array for
    every intermediate, softmax then cross-entropy): the baseline the engine's care is for."""
    rng = np.random.default_rng(0)
    Ws = [
        (rng.standard_normal((i, o)) * np.sqrt(2 / i)).astype(np.float32)
        for i, o in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]
    bs = [np.zeros(o, np.float32) for o in SIZES[1:]]
    vW = [np.zeros_like(w) for w in Ws]
    vb = [np.zeros_like(b) for b in bs]
    n = X.shape[0]
    t = time.perf_counter()
    perm = rng.permutation(n)
    for s in range(0, n, BATCH):
        idx = perm[s : s + BATCH]
        xb, yb = X[idx], y[idx]
        acts = [xb]
        for k, (w, b) in enumerate(zip(Ws, bs, strict=True)):
            z = acts[-1] @ w + b
            acts.append(np.maximum(z, 0) if k < len(Ws) - 1 else z)
        z = acts[-1]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        delta = p
        delta[np.arange(len(yb)), yb] -= 1
        delta /= len(yb)
        for k in range(len(Ws) - 1, -1, -1):
            gW, gb = acts[k].T @ delta, delta.sum(axis=0)
            if k > 0:
                delta = (delta @ Ws[k].T) * (acts[k] > 0)
            vW[k] = MOMENTUM * vW[k] - LR * gW
            vb[k] = MOMENTUM * vb[k] - LR * gb
            Ws[k] += vW[k]
            bs[k] += vb[k]
    return time.perf_counter() - t


def bench_engine_matmuls(n_rows: int) -> float:
    """The same GEMMs as one engine epoch, alone: the floor the engine's own code sits on."""
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.random(shape, dtype=np.float32) - np.float32(0.5)

    x, a1, a2 = arr(BATCH, 784), arr(BATCH, 256), arr(BATCH, 128)
    d1, d2, d3 = arr(BATCH, 256), arr(BATCH, 128), arr(BATCH, 10)
    w1, w2, w3 = (arr(i, o) for i, o in zip(SIZES[:-1], SIZES[1:], strict=True))
    z1, z2, z3 = np.empty_like(d1), np.empty_like(d2), np.empty_like(d3)
    e1, e2 = np.empty_like(a1), np.empty_like(a2)
    g1, g2, g3 = np.empty_like(w1), np.empty_like(w2), np.empty_like(w3)
    # (left, right, out); outputs never feed back into inputs, so values stay finite
    forward = [(x, w1, z1), (a1, w2, z2), (a2, w3, z3)]
    weight_grads = [(x.T, d1, g1), (a1.T, d2, g2), (a2.T, d3, g3)]
    input_grads = [(d3, w3.T, e2), (d2, w2.T, e1)]  # layers 3 and 2
    ops = forward + weight_grads + input_grads

    def epoch():
        for _ in range(-(-n_rows // BATCH)):
            for p, q, out in ops:
                np.matmul(p, q, out=out)

    epoch()
    return min(_timed(epoch) for _ in range(2))


def torch_matmul_gflops(torch, n: int = 4096) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.mm(a, b)
    return 2 * n**3 / min(_timed(lambda: torch.mm(a, b, out=c)) for _ in range(3)) / 1e9


def bench_torch(X, y, epochs: int) -> list[float] | str:
    try:
        import torch
    except ImportError:
        return "torch not installed (pip install torch==2.13.0)"
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"  torch's own float32 matmul 4096 x 4096: {torch_matmul_gflops(torch):.1f} GFLOP/s")
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    n = Xt.shape[0]
    times = []
    for epoch in range(1, epochs + 2):
        t = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, BATCH):
            idx = perm[s : s + BATCH]
            xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        times.append(time.perf_counter() - t)
        print(f"  torch  epoch {epoch}: {times[-1]:.3f} s  train loss {total / n:.4f}")
    return times[1:]


def bench_sklearn(X, y, epochs: int, label: str = "sklearn") -> list[float] | str:
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return "scikit-learn not installed (pip install scikit-learn)"
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(SIZES[1:-1]),
        activation="relu",
        solver="sgd",
        alpha=0.0,
        batch_size=BATCH,
        learning_rate_init=LR,
        momentum=MOMENTUM,
        nesterovs_momentum=False,
        max_iter=1,
        shuffle=True,
        random_state=0,
        warm_start=True,
        tol=0.0,
    )
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter=1 on purpose
        for epoch in range(1, epochs + 2):
            t = time.perf_counter()
            clf.fit(X, y)  # warm_start: every call is one more epoch
            times.append(time.perf_counter() - t)
            print(f"  {label} epoch {epoch}: {times[-1]:.3f} s  train loss {clf.loss_:.4f}")
    return times[1:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after 1 warm-up)")
    parser.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args(argv)

    X, y = load_fashion(args.data_dir)
    gflop = epoch_gflop(X.shape[0])
    with threadpool_limits(limits=1):
        blas = [
            f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture')} "
            f"threads {p.get('num_threads')}"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
        env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        print(f"numpy {np.__version__}; BLAS: {'; '.join(blas)}")
        print(f"env: {', '.join(f'{k}={v}' for k, v in env.items())}")
        print(f"data: Fashion-MNIST train {X.shape}, epoch = {gflop:.2f} GFLOP, batch {BATCH}")

        print("(c) float32 matmul 4096 x 4096, one thread ...")
        mm = matmul_gflops()
        print(f"  {mm:.1f} GFLOP/s")
        print("engine ...")
        eng, train_eval, rss, eval_time = bench_engine(X, y, args.epochs)
        print("engine with label smoothing 0.1 ...")
        smoothed = bench_engine(X, y, args.epochs, label_smoothing=0.1)[0]
        gemm_only = bench_engine_matmuls(X.shape[0])
        naive = statistics.median(bench_naive_numpy(X, y) for _ in range(3))
        print(f"  straightforward numpy loop: {naive:.3f} s per epoch")
        print("(a) PyTorch ...")
        tor = "skipped (--no-torch)" if args.no_torch else bench_torch(X, y, args.epochs)
        print("(b) scikit-learn MLPClassifier, float32 input (kept in float32) ...")
        skl = "skipped (--no-sklearn)" if args.no_sklearn else bench_sklearn(X, y, args.epochs)
        # For reference: fed float64 (numpy's default dtype), scikit-learn computes in float64.
        print("(b') scikit-learn MLPClassifier, float64 input (for reference) ...")
        skl64 = (
            "skipped (--no-sklearn)"
            if args.no_sklearn
            else bench_sklearn(X.astype(np.float64), y, args.epochs, "sklearn float64")
        )

    e = statistics.median(eng)
    print()
    print(f"median of {args.epochs} epochs after one warm-up epoch")
    print(f"  engine        {e:7.3f} s   {gflop / e:6.1f} GFLOP/s")
    print(
        f"  naive numpy   {naive:7.3f} s   {gflop / naive:6.1f} GFLOP/s  (the same loop, "
        "written plainly)"
    )
    print(
        f"  (engine GEMMs alone {gemm_only:.3f} s; its validation pass over 10k rows "
        f"{eval_time:.3f} s, not included above)"
    )
    te = statistics.median(train_eval)
    print(
        f"  engine epoch with the train evaluation ({TRAIN_EVAL_ROWS:,} rows, evaluation "
        f"mode) {e + te:7.3f} s, without {e:7.3f} s: +{te / e:.1%}"
    )
    ls = statistics.median(smoothed)
    print(
        f"  engine epoch with label smoothing 0.1 {ls:7.3f} s, without {e:7.3f} s: "
        f"{ls / e - 1:+.1%}"
    )
    results = [
        ("engine / matmul rate", (gflop / e) / mm, ">= 0.80", (gflop / e) / mm >= 0.80),
        ("train evaluation cost", te / e, "<= 0.15", te / e <= 0.15),
    ]
    rows = (("PyTorch", tor, 0.65), ("scikit-learn", skl, 0.5), ("sklearn f64", skl64, None))
    for name, res, target in rows:
        if isinstance(res, str):
            print(f"  {name:13s} {res}")
            continue
        m = statistics.median(res)
        print(f"  {name:13s} {m:7.3f} s   {gflop / m:6.1f} GFLOP/s")
        if target is None:
            results.append((f"engine / {name}", e / m, "(info)", None))
        else:
            results.append((f"engine / {name}", e / m, f"<= {target}", e / m <= target))
    print(
        f"  matmul        {gflop / mm:7.3f} s   {mm:6.1f} GFLOP/s  (an epoch's FLOPs at this rate)"
    )
    print("ratios")
    for label, value, target, ok in results:
        verdict = "" if ok is None else ("met" if ok else "NOT met")
        print(f"  {label:22s} {value:5.2f}   target {target:7s} {verdict}")
    print(
        f"  engine / its GEMMs     {e / gemm_only:5.2f}   (time spent beyond the matrix products)"
    )
    print(f"  naive numpy / matmul   {(gflop / naive) / mm:5.2f}   (what the care above buys)")
    growth = rss[-1] - rss[1]
    print(
        f"memory: RSS {rss[1]:.1f} MB after engine epoch 2, {rss[-1]:.1f} MB after the last "
        f"({growth:+.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
