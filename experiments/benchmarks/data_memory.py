"""Do worker processes share a large dataset's memory? Measure it (Linux).

Each worker process calls ``load_dataset`` and touches every value of all six parts (a sum),
then waits while this script reads its memory from ``/proc/<pid>/smaps_rollup``:

- RSS: resident pages mapped by the process, shared ones counted in full;
- PSS: proportional set size, each shared page divided among the processes that map it, so the
  sum of PSS over processes is the memory they really use together;
- USS: private pages only (Private_Clean + Private_Dirty).

Modes: ``baseline`` (imports only: interpreter + numpy), ``memmap`` (``load_dataset`` as is:
read-only memory maps of the prepared ``.npy`` files) and ``copy`` (each worker copies the
arrays into its own memory, as a loader without sharing would). The dataset is prepared once,
by a separate process, before any measurement.

Usage::

    python experiments/benchmarks/data_memory.py [--dataset fashion-mnist] [--workers 2]
        [--cache DIR] [--data-dir DIR]

``--cache`` defaults to a temporary folder that is removed afterwards (about 220 MB for
Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile

import numpy as np

from mlpsearch.engine.data import load_dataset

PARTS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")


def worker(name: str, data_dir: str | None, mode: str, ready, go) -> None:
    """Load (unless baseline), touch every value, report, then wait to be measured.

    Mode "prepare" only loads (building the prepared cache) and exits.
    """
    checksum = 0.0
    if mode != "baseline":
        ds = load_dataset(name, data_dir=data_dir)
        if mode == "prepare":
            return
        arrays = [getattr(ds, part) for part in PARTS]
        if mode == "copy":  # private copies; dropping the maps unmaps the shared pages
            arrays = [np.array(a) for a in arrays]
            del ds
        checksum = sum(float(a.sum(dtype=np.float64)) for a in arrays)
    ready.put((os.getpid(), checksum))
    go.wait()


def smaps_rollup(pid: int) -> dict[str, float]:
    """Memory figures of process ``pid`` in MiB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in FIELDS:
                values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    values["Uss"] = values["Private_Clean"] + values["Private_Dirty"]
    return values


def measure(ctx, name: str, data_dir: str | None, mode: str, n: int) -> list[dict[str, float]]:
    """Start ``n`` workers in ``mode``; return each one's memory while all are alive."""
    ready, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(name, data_dir, mode, ready, go)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        reports = [ready.get(timeout=600) for _ in procs]
        if len({checksum for _, checksum in reports}) != 1:
            raise RuntimeError("workers saw different data")
        return [smaps_rollup(pid) for pid, _ in reports]
    finally:
        go.set()
        for p in procs:
            p.join(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=None, help="cache root (default: a temporary folder)")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/smaps_rollup"):
        raise SystemExit("needs Linux >= 4.14 (/proc/<pid>/smaps_rollup)")

    cache = args.cache or tempfile.mkdtemp(prefix="mlpsearch-memory-")
    os.environ["MLPSEARCH_CACHE"] = cache  # inherited by the spawned workers
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing inherited copy-on-write
    try:
        prep_args = (args.dataset, args.data_dir, "prepare", None, None)
        prep = ctx.Process(target=worker, args=prep_args)
        prep.start()
        prep.join()
        if prep.exitcode != 0:
            raise SystemExit(f"preparing {args.dataset} failed (exit code {prep.exitcode})")
        ds = load_dataset(args.dataset, data_dir=args.data_dir)
        data_mib = sum(getattr(ds, p).nbytes for p in PARTS) / 2**20
        print(f"{ds!r}\nsource: {ds.source}")
        print(f"arrays: {data_mib:.1f} MiB (float32 features, int64 labels); cache: {cache}")
        del ds
        print(f"\n{'mode':9} {'workers':>7} {'RSS sum':>9} {'PSS sum':>9} {'USS sum':>9}  MiB")
        totals = {}
        for mode in ("baseline", "memmap", "copy"):
            for n in sorted({1, args.workers}):
                stats = measure(ctx, args.dataset, args.data_dir, mode, n)
                sums = {k: sum(s[k] for s in stats) for k in ("Rss", "Pss", "Uss")}
                totals[mode, n] = sums
                print(f"{mode:9} {n:7d} {sums['Rss']:9.1f} {sums['Pss']:9.1f} {sums['Uss']:9.1f}")
        n = args.workers
        print()
        for mode in ("memmap", "copy"):
            one, many = totals[mode, 1]["Pss"], totals[mode, n]["Pss"]
            base1, basen = totals["baseline", 1]["Pss"], totals["baseline", n]["Pss"]
            print(
                f"{mode}: {n} workers use {many:.1f} MiB PSS = {many / one:.2f}x one worker "
                f"({one:.1f} MiB); above the bare interpreters: {many - basen:.1f} vs "
                f"{one - base1:.1f} MiB = {(many - basen) / (one - base1):.2f}x"
            )
    finally:
        if args.cache is None:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
