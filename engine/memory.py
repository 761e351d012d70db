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
#: Copies of the parameters a training run holds: weights, gradients, optimizer state (Adam
#: keeps two), the velocity of momentum, and the best epoch's clone kept by a re-run.
PARAMETER_COPIES = 5


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


def mlp_bytes(layer_sizes: Sequence[int], batch_size: int, n_rows: int = 0) -> int:
    """A generous estimate of the bytes one training run of this network needs.

    Parameters
    ----------
    layer_sizes : [n_in, hidden..., n_out].
    batch_size : rows per minibatch (the activation buffers hold one batch per layer).
    n_rows : rows evaluated at once when computing the errors of a whole part (0: none).

    Returns
    -------
    int: bytes for the parameters (times :data:`PARAMETER_COPIES`) and activation buffers.
    """
    params = mlp_parameters(layer_sizes)
    rows = max(batch_size, min(n_rows, 4096)) if n_rows else batch_size
    units = sum(int(n) for n in layer_sizes)
    # forward outputs, pre-activations and their gradients: about four buffers per layer
    return FLOAT_BYTES * (PARAMETER_COPIES * params + 4 * rows * units)


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
