"""The file chores done one way: atomic writes, bounded locks, and what the engine imports."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlpsearch.engine import MLP
from mlpsearch.engine.files import FileLock, LockTimeout, file_lock, write_atomic
from mlpsearch.errors import exit_code


def leftovers(folder: Path) -> list[str]:
    """Temporary files write_atomic would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- write_atomic ----------------------------------------------------------------------------


def test_writes_text_bytes_and_through_a_file_object(tmp_path):
    write_atomic(tmp_path / "a.txt", "grüße\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_atomic(tmp_path / "c.npz", lambda f: np.savez(f, x=np.arange(3)))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "grüße\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with np.load(tmp_path / "c.npz") as z:  # the exact name: no ".npz" appended
        assert z["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npz"]


def test_new_files_get_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640
    (tmp_path / "kept").write_text("old")
    (tmp_path / "kept").chmod(0o604)
    write_atomic(tmp_path / "kept", "new")
    assert stat.S_IMODE((tmp_path / "kept").stat().st_mode) == 0o604
    assert (tmp_path / "kept").read_text() == "new"


FAILURES = [ValueError("bad"), OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt]


@pytest.mark.parametrize("error", FAILURES)
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "table.csv"
    target.write_text("old, whole\n")

    def half_then_fail(f):
        f.write(b"new, but only ha")
        raise error

    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old, whole\n"
    assert leftovers(tmp_path) == []


def test_a_full_disk_leaves_the_old_file_and_no_temporary(small_disk):
    target = small_disk("64k") / "model.npz"
    MLP([4, 3, 2], "relu", seed=0).save(target)
    before = target.read_bytes()
    big = MLP([4, 4000, 2], "relu", seed=0)  # about 64 KiB of float32 weights: does not fit
    with pytest.raises(OSError) as err:
        big.save(target)
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert leftovers(target.parent) == []
    assert MLP.load(target).architecture() == MLP([4, 3, 2], "relu", seed=0).architecture()


def test_concurrent_writers_never_share_a_temporary_name(tmp_path):
    """Eight writers inside write_atomic at the same moment: eight temporary files; the target
    ends as one writer's whole content."""
    n = 8
    barrier = threading.Barrier(n)
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def write(i: int) -> None:
        def content(f):
            f.write(f"writer {i}\n".encode() * 1000)
            barrier.wait(timeout=30)  # all n temporaries exist now
            seen.append(leftovers(tmp_path))
            barrier.wait(timeout=30)

        try:
            write_atomic(tmp_path / "shared.txt", content)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(len(names) == n == len(set(names)) for names in seen)
    text = (tmp_path / "shared.txt").read_text()
    first = text.splitlines()[0]
    assert text == f"{first}\n" * 1000
    assert leftovers(tmp_path) == []


def _rewrite(path: str, tag: int, rounds: int) -> None:
    for _ in range(rounds):
        write_atomic(path, bytes([tag]) * 200_000)


def test_a_reader_never_sees_half_a_file(tmp_path):
    """Two processes rewrite one file over and over; a reader sees only whole versions."""
    target = tmp_path / "data.bin"
    write_atomic(target, bytes([0]) * 200_000)
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_rewrite, args=(str(target), tag, 200)) for tag in (1, 2)]
    for w in writers:
        w.start()
    versions = set()
    while any(w.is_alive() for w in writers):
        data = target.read_bytes()
        assert len(data) == 200_000 and data == bytes([data[0]]) * 200_000
        versions.add(data[0])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert leftovers(tmp_path) == []
    assert versions  # the reader did look


# --- file_lock -------------------------------------------------------------------------------


def test_lock_as_context_manager_and_with_acquire_release(tmp_path):
    path = tmp_path / "x.lock"
    with file_lock(path, timeout=1) as held:
        assert held
        with pytest.raises(LockTimeout):  # a second holder, even in this process, waits
            FileLock(path, timeout=0.2).acquire()
    lock = FileLock(path, timeout=1)
    assert lock.acquire()
    lock.release()
    lock.release()  # harmless
    with file_lock(path, timeout=1) as held:
        assert held


def test_a_stopped_holder_makes_the_waiter_give_up_within_the_limit(tmp_path, lock_holder):
    path = tmp_path / "journal.log.flock"
    proc = lock_holder(path)
    os.kill(proc.pid, signal.SIGSTOP)  # a suspended machine, a debugger, Ctrl-Z
    started = time.monotonic()
    with pytest.raises(LockTimeout) as err:
        with file_lock(path, timeout=1.0, what="journal results/x/journal.log"):
            pass
    waited = time.monotonic() - started
    assert 1.0 <= waited < 10.0
    message = str(err.value)
    assert message.startswith("journal results/x/journal.log: another process has held its lock")
    assert "1 s" in message and "\n" not in message
    assert exit_code(err.value) == 1  # the command line stops with one line, exit 1


def test_a_killed_holder_releases_the_lock(tmp_path, lock_holder):
    path = tmp_path / "x.lock"
    proc = lock_holder(path)
    proc.kill()
    proc.wait(timeout=30)
    with file_lock(path, timeout=5) as held:
        assert held


def test_a_waiter_gets_the_lock_once_it_is_released(tmp_path):
    path = tmp_path / "x.lock"
    first = FileLock(path, timeout=1)
    first.acquire()
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    with file_lock(path, timeout=30) as held:
        assert held
    releaser.join()


def test_a_waiter_that_gave_up_does_not_keep_the_lock_later(tmp_path):
    """Timed out, or interrupted by Ctrl-C: once the holder lets go, the lock is free for the
    next one. The main thread waits in the kernel with an alarm, and leaves SIGALRM as it was."""
    path = tmp_path / "x.lock"
    first = FileLock(path, timeout=1)
    first.acquire()
    with pytest.raises(LockTimeout):
        FileLock(path, timeout=0.2).acquire()
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    main = threading.main_thread().ident
    interrupt = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    interrupt.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        FileLock(path, timeout=30).acquire()
    assert time.monotonic() - started < 10  # Ctrl-C stops the wait at once
    interrupt.join()
    first.release()
    with file_lock(path, timeout=10) as held:
        assert held


def test_other_threads_wait_a_bounded_time_too(tmp_path):
    """A thread (the heartbeat's) cannot use the alarm: a helper thread waits for it, and one
    that gave up lets the lock go as soon as it gets it."""
    path = tmp_path / "x.lock"
    first = FileLock(path, timeout=1)
    first.acquire()
    outcome: list = []

    def take(timeout: float) -> None:
        lock = FileLock(path, timeout=timeout)
        try:
            outcome.append(lock.acquire())
            lock.release()
        except LockTimeout as err:
            outcome.append(err)

    gives_up = threading.Thread(target=take, args=(0.3,))
    gives_up.start()
    gives_up.join()
    assert isinstance(outcome[0], LockTimeout)
    waits = threading.Thread(target=take, args=(30,))
    waits.start()
    threading.Timer(0.3, first.release).start()
    waits.join()
    assert outcome[1] is True
    with file_lock(path, timeout=10) as held:
        assert held


def test_the_data_cache_build_lock_is_the_shared_lock(tmp_path):
    from mlpsearch.engine.data import datasets

    lock = datasets._build_lock(tmp_path / "prepared" / "mnist-0123")
    assert isinstance(lock, FileLock)
    assert lock.path == tmp_path / "prepared" / ".mnist-0123.lock"
    assert lock.timeout == datasets.BUILD_LOCK_SECONDS


# --- the engine's public face ----------------------------------------------------------------


def test_importing_the_engine_loads_no_network_or_locking_module():
    """``import mlpsearch.engine``: no urllib.request, http.client, fcntl, nor the data loaders.
    (``urllib.parse`` is loaded by the standard library's own pathlib, so it is not checked.)"""
    code = (
        "import sys, mlpsearch.engine\n"
        "bad = ['urllib.request', 'urllib.error', 'http.client', 'fcntl',\n"
        "       'mlpsearch.engine.data']\n"
        "print(' '.join(m for m in bad if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
