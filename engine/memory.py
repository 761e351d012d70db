"""How much memory this process may use, and how much a network or an array needs (stdlib only).

Every size that comes from input (a declared array shape, a network's layer sizes, a grid) is
checked against :func:`available_bytes` *before* anything is allocated or created, so that a
bad input is one line and exit 2 instead of a MemoryError, a swapping machine or a killed
process half way through a study.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence

#: Bytes per value of the engine's float32 training.
FLOAT_BYTES = 4
#: Arrays the size of all parameters that an optimizer keeps beside the parameters and their
#: gradients (engine/optimizers.py): momentum its velocity, Nesterov a scratch array too, Adam
#: two moments and two scratch arrays. Weight decay adds one the size of the weights.
OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 4}
#: Rows per chunk when a whole part is evaluated (engine/network.py ``_EVAL_ROWS``), and
#: training rows whose error is measured each epoch (engine/training.py ``TRAIN_EVAL_ROWS``):
#: a larger training part has that many rows copied once.
EVAL_ROWS = 1024
TRAIN_EVAL_ROWS = 10_000
#: Python objects of one training run beside its arrays (the history, the trial's records).
OVERHEAD_BYTES = 1 << 20


def available_bytes() -> int:
    """Memory this process can still use: the least of the machine's available memory, the
    cgroup's remaining limit, and the address-space limit (``ulimit -v``)."""
    limits = [_meminfo_available()]
    cgroup = _cgroup_remaining()
    if cgroup is not None:
        limits.append(cgroup)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _vm_size()))
    return max(0, min(limits))


def mlp_bytes(
    layer_sizes: Sequence[int],
    batch_size: int,
    n_rows: int = 0,
    *,
    optimizer: str = "adam",
    weight_decay: bool = True,
    dropout: bool = True,
    n_val: int | None = None,
) -> int:
    """The most memory one training run of this network takes: an upper bound, and a close one
    (a few percent above the peak measured in tests/test_memory.py).

    Parameters
    ----------
    layer_sizes : [n_in, hidden..., n_out].
    batch_size : rows per minibatch.
    n_rows : rows of the training part (0: none evaluated; the bound for a batch alone).
    optimizer : its update rule (:data:`OPTIMIZER_COPIES`); by default the hungriest.
    weight_decay, dropout : whether they are used (by default, as if they were).
    n_val : rows of the validation part (default: as many as are evaluated at once).

    Returns
    -------
    int: bytes of the parameters, their gradients and the optimizer's state; the buffers of
    one batch per layer (forward outputs, pre-activations, their gradients and scratch, dropout
    masks) for the minibatch and for each evaluated part (at most :data:`EVAL_ROWS` rows at
    once); the sample of training rows evaluated each epoch; and :data:`OVERHEAD_BYTES`.
    """
    sizes = [int(n) for n in layer_sizes]
    n_in, hidden, n_out = sizes[0], sizes[1:-1], sizes[-1]
    params = mlp_parameters(sizes)
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    copies = (2 + OPTIMIZER_COPIES.get(optimizer, max(OPTIMIZER_COPIES.values()))) * params
    copies += weights if weight_decay else 0
    n_val = EVAL_ROWS if n_val is None else n_val
    batch = min(batch_size, n_rows) if n_rows else batch_size
    # one workspace per number of rows (the minibatch, each evaluated part's chunk), shared
    capacities = {batch} | {min(n, EVAL_ROWS) for n in (min(n_rows, TRAIN_EVAL_ROWS), n_val) if n}
    width = sum(hidden)
    # per row of a workspace: its input, four buffers per hidden unit (pre-activation,
    # activation, gradient, scratch), the logits twice, the label and the loss's per-row values
    per_row = n_in + 4 * width + 2 * n_out + 16
    buffers = sum(capacities) * per_row + (2 * batch * width if dropout else 0)
    evaluated = TRAIN_EVAL_ROWS * (n_in + 2) if n_rows > TRAIN_EVAL_ROWS else 0
    # the dead-unit count of an evaluation compares a chunk's activations with 0 (1 byte each)
    compare = max(hidden, default=0) * max(capacities) / FLOAT_BYTES
    return int(FLOAT_BYTES * (copies + buffers + evaluated + compare)) + OVERHEAD_BYTES


def mlp_parameters(layer_sizes: Sequence[int]) -> int:
    """Weights and biases of a network with these layer sizes."""
    sizes = [int(n) for n in layer_sizes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def describe_bytes(n: float) -> str:
    """``n`` bytes for a person: ``'112.0 GiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - no way to know: do not refuse
        return 2**62


def _cgroup_remaining() -> int | None:
    """The cgroup v2 (or v1) memory limit less what the cgroup uses, if there is a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file, encoding="ascii") as f:
                text = f.read().strip()
            if text == "max" or int(text) >= 2**60:
                return None
            with open(usage_file, encoding="ascii") as f:
                return max(0, int(text) - int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return None


def _vm_size() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
