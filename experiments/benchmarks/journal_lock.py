"""The journal's lock: appends per second with the bounded FileLock against a blocking flock.

``mlpsearch.engine.files.FileLock`` bounds its wait: a free lock is taken at once; a busy one is
waited for in a blocking ``flock`` that a one-shot SIGALRM stops after the time limit (in the
main thread; other threads wait through a helper thread). The journal's former lock blocked in
``flock`` with no limit. This measures what the bound costs when several processes append at
once, the worst case: ``--procs`` processes each append ``--appends`` small records back to back
(an fsync each, as Optuna's journal does) through :class:`mlpsearch.journal.JournalBackend`,
once with each lock, alternating ``--repeat`` times; it prints the median appends per second of
each and their ratio. Both wait in the kernel, so the ratio should be near 1, but the runs of
each spread by a factor of three on shared machines: ``load.py --storage journal``, run against
the former code, measures what matters end to end, in trials/s.

    python experiments/benchmarks/journal_lock.py [--procs 4] [--appends 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

from mlpsearch.engine.files import FileLock
from mlpsearch.journal import JournalBackend


class BlockingFlock:
    """The reference: the journal's former lock, a blocking ``flock`` with no time limit."""

    def __init__(self, path: str) -> None:
        self.path, self._fd = path, None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _append(journal: str, kind: str, appends: int, go) -> None:
    lock = (
        FileLock(journal + ".flock", 30)
        if kind == "FileLock"
        else BlockingFlock(journal + ".flock")
    )
    backend = JournalBackend(journal, lock)
    record = {"op_code": 8, "worker_id": str(os.getpid()), "trial_id": 0, "user_attr": {"k": 1}}
    go.wait()
    for _ in range(appends):
        backend.append_logs([record])


def measure(kind: str, procs: int, appends: int, folder: Path) -> float:
    """Appends per second of ``procs`` processes appending together through ``kind``."""
    journal = tempfile.mktemp(dir=folder, suffix=".log")
    Path(journal).touch()
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    workers = [
        ctx.Process(target=_append, args=(journal, kind, appends, go)) for _ in range(procs)
    ]
    for w in workers:
        w.start()
    time.sleep(0.5)  # every process is ready
    started = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
        assert w.exitcode == 0
    seconds = time.perf_counter() - started
    lines = Path(journal).read_bytes().count(b"\n")
    assert lines == procs * appends, (lines, procs * appends)  # none lost, none torn
    return lines / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"blocking flock": [], "FileLock": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for kind in rates:
                rates[kind].append(measure(kind, args.procs, args.appends, Path(tmp)))
    for kind, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{kind:>15}: {statistics.median(values):7.0f} appends/s (runs: {shown})")
    ratio = statistics.median(rates["FileLock"]) / statistics.median(rates["blocking flock"])
    print(f"FileLock / blocking flock: {ratio:.2f}, {args.procs} processes")


if __name__ == "__main__":
    main()
