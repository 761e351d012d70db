"""The thread budget: one function shares out the cores, one reads what is in force."""

from __future__ import annotations

import os

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mlpsearch.threads import THREAD_VARS, blas_kernel, blas_threads, thread_env, worker_threads


def test_each_worker_gets_its_share_of_the_cores_and_at_least_one():
    cores = os.cpu_count() or 1
    for n_jobs in (1, 2, 3, cores, 4 * cores):
        assert worker_threads(n_jobs) == max(1, cores // n_jobs)
    assert worker_threads(4 * cores) == 1
    assert thread_env(3) == {var: "3" for var in THREAD_VARS}
    assert "OPENBLAS_NUM_THREADS" in THREAD_VARS


def test_the_blas_threads_in_force_follow_the_limit():
    np.ones(1) @ np.ones(1)  # the BLAS is loaded
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    with threadpool_limits(limits=1):
        assert blas_threads() == 1
    assert blas_threads() == max(p["num_threads"] for p in blas)


def test_the_blas_kernel_names_library_version_and_architecture():
    p = next(p for p in threadpool_info() if p["user_api"] == "blas")
    kernel = blas_kernel()
    assert kernel.startswith(p["internal_api"])
    assert p["version"] in kernel
    if p.get("architecture"):
        assert kernel.endswith(p["architecture"])
