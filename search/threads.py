"""The thread budget: how many BLAS threads each worker gets, and what is in force.

Worker processes share the cores instead of oversubscribing them: each of ``n_jobs`` workers
gets ``cpu_count // n_jobs`` BLAS threads (at least one). A trial records the count in force
and the BLAS kernel, since a bitwise reproduction (``mlpsearch rerun``) needs the same ones.
"""

from __future__ import annotations

import os

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
    """The BLAS library in use: API, version and kernel, e.g. ``"openblas 0.3.27 Haswell"``."""
    pools = _blas_pools()
    if not pools:
        return "none"
    p = pools[0]
    parts = (p.get("internal_api"), p.get("version"), p.get("architecture"))
    return " ".join(str(x) for x in parts if x)


def _blas_pools() -> list[dict]:
    import numpy  # noqa: F401 (threadpoolctl sees only the libraries already loaded)
    from threadpoolctl import threadpool_info

    return [p for p in threadpool_info() if p.get("user_api") == "blas"]
