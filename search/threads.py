"""The thread budget: how many BLAS threads each worker gets, and what is in force.

Worker processes share the cores instead of oversubscribing them: each of ``n_jobs`` workers
gets ``cpu_count // n_jobs`` BLAS threads (at least one). A trial records the count in force
and the BLAS kernel, since a bitwise reproduction (``mlpsearch rerun``) needs the same ones.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variables that fix the thread count of the BLAS and OpenMP libraries.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def worker_threads(n_jobs: int) -> int:
    """BLAS threads of each of ``n_jobs`` worker processes: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // n_jobs)


def thread_env(threads: int) -> dict[str, str]:
    """Environment that holds a new process's BLAS (and OpenMP) to ``threads`` threads."""
    return {var: str(threads) for var in THREAD_VARS}


def blas_threads() -> int:
    """The BLAS thread count in force in this process (1 if no BLAS is loaded)."""
    return max((p["num_threads"] for p in _blas_pools()), default=1)


def blas_kernel() -> str:
    """The BLAS library numpy computes with: API, version and kernel, e.g.
    ``"openblas 0.3.27 Haswell"``; ``"none"`` if no BLAS is loaded."""
    pools = numpy_blas_first(_blas_pools())
    if not pools:
        return "none"
    p = pools[0]
    parts = (p.get("internal_api"), p.get("version"), p.get("architecture"))
    return " ".join(str(x) for x in parts if x)


def numpy_blas_first(pools: list[dict]) -> list[dict]:
    """``pools`` (threadpoolctl's BLAS entries), numpy's own first: the one whose file lies in
    numpy's folders (``numpy/``, or ``numpy.libs/`` beside it in a wheel install), then a
    system library (a distribution's numpy links one), then another package's copy (scipy's
    wheel brings its own OpenBLAS). threadpoolctl's order is no guide: it changes from process
    to process."""

    def rank(pool: dict) -> int:
        folders = Path(pool.get("filepath") or "").parts[:-1]
        if "numpy" in folders or "numpy.libs" in folders:
            return 0
        if "site-packages" in folders or "dist-packages" in folders:
            return 2
        return 1

    return sorted(pools, key=rank)  # stable: in load order within a rank


def _blas_pools() -> list[dict]:
    import numpy  # noqa: F401 (threadpoolctl sees only the libraries already loaded)
    from threadpoolctl import threadpool_info

    return [p for p in threadpool_info() if p.get("user_api") == "blas"]
