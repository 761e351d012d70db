"""The thread budget: one function shares out the cores, one reads what is in force."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from mlpsearch.threads import (
    THREAD_VARS,
    blas_kernel,
    blas_threads,
    numpy_blas_first,
    thread_env,
    worker_threads,
)


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
    p = numpy_blas_first([p for p in threadpool_info() if p["user_api"] == "blas"])[0]
    kernel = blas_kernel()
    assert kernel.startswith(p["internal_api"])
    assert p["version"] in kernel
    if p.get("architecture"):
        assert kernel.endswith(p["architecture"])


def pool(filepath: str, version: str) -> dict:
    return {"user_api": "blas", "internal_api": "openblas", "filepath": filepath,
            "version": version, "architecture": "Haswell", "num_threads": 2}  # fmt: skip


def test_numpys_blas_comes_before_one_another_package_loaded_first():
    site = "/venv/lib/python3.11/site-packages"
    scipy = pool(f"{site}/scipy.libs/libscipy_openblas-1.so", "0.3.28")
    wheel = pool(f"{site}/numpy.libs/libscipy_openblas64_-2.so", "0.3.27")
    old_wheel = pool(f"{site}/numpy/.libs/libopenblasp-r0.3.21.so", "0.3.21")
    system = pool("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", "0.3.26")
    assert numpy_blas_first([scipy, wheel]) == [wheel, scipy]
    assert numpy_blas_first([scipy, old_wheel]) == [old_wheel, scipy]
    assert numpy_blas_first([scipy, system]) == [system, scipy]  # a distribution's numpy
    assert numpy_blas_first([system, wheel]) == [wheel, system]
    assert numpy_blas_first([]) == []


# numpy and scipy, each with its BLAS loaded; what threadpoolctl lists (in an order that
# changes from process to process: it follows the hash seed) and what blas_kernel() says
BOTH_LOADED = """
import json
import numpy, scipy.linalg
from threadpoolctl import threadpool_info
from mlpsearch.threads import blas_kernel
print(json.dumps([[p for p in threadpool_info() if p["user_api"] == "blas"], blas_kernel()]))
"""


def test_the_blas_kernel_is_numpys_whichever_blas_is_listed_first():
    firsts = set()
    for seed in range(4):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run(
            [sys.executable, "-c", BOTH_LOADED], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        pools, kernel = json.loads(out.stdout)
        numpys = [p for p in pools if {"numpy", "numpy.libs"} & set(p["filepath"].split(os.sep))]
        if not numpys:
            pytest.skip("numpy's BLAS is not in numpy's folders here (a distribution's numpy)")
        p = numpys[0]
        assert kernel == " ".join(
            str(x) for x in (p["internal_api"], p["version"], p.get("architecture")) if x
        )
        firsts.add(pools[0]["filepath"])
    print(f"listed first: {sorted(firsts)}")  # with scipy's wheel, both in turn
