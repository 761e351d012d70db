"""Two file chores done one way everywhere: atomic writes and bounded file locks (stdlib only).

Every file mlpsearch writes (model files, the data cache, downloads, result tables, plots,
reports) goes through :func:`write_atomic`: the content is written to a uniquely named
temporary file in the same folder and renamed over the target, so a reader sees the old file
or the new one, never half of one; concurrent writers never share a temporary name; a failed
write (a full disk) removes its temporary file and leaves the target as it was.

Every lock (the data cache's build lock, the journal's lock, the planning lock) is a
:class:`FileLock` with a bounded wait: a process that is stopped or hung while holding it makes
the others give up with :class:`LockTimeout` instead of waiting forever. The kernel releases
an ``flock`` when its holder dies, so a killed holder never blocks anyone.

``fcntl`` is imported when a lock is first taken, not with the engine.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class LockTimeout(TimeoutError):
    """A lock was not had within its time limit (its holder is stopped, hung or slow)."""


def write_atomic(
    path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], object]
) -> None:
    """Write ``content`` to ``path`` atomically.

    Parameters
    ----------
    path : the file to write; its folder must exist. An existing file is replaced whole.
    content : text (written as UTF-8), bytes, or a function that writes to the binary file
        object it is given (``np.savez``, ``figure.savefig``, ``df.to_csv`` all take one).

    The new file keeps the permissions of the file it replaces, or gets those a plain
    ``open(path, "w")`` would give it (0666 less the umask). Any exception (a full disk, an
    error raised by ``content``) removes the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, bytes | bytearray | memoryview):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _mode_for(path: Path) -> int:
    """The permission bits ``path`` should get: those of the file it replaces, else 0666 less
    the umask (mkstemp's own 0600 would hide results from other users)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the system allows (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every system can sync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FileLock:
    """An exclusive ``flock`` on a file (created if missing), taken with a bounded wait.

    Usable as a context manager (``with FileLock(p, 30) as held:``, ``held`` False where the
    file system cannot lock, so that the caller may go on unlocked) and through
    :meth:`acquire` / :meth:`release`, the interface Optuna's ``JournalFileBackend`` expects
    of its ``lock_obj``. One object is one lock: it is not re-entrant.

    Parameters
    ----------
    path : the lock file.
    timeout : seconds to wait for a busy lock before raising :class:`LockTimeout`.
    what : names the locked thing in the timeout's message (default: the lock file).
    """

    def __init__(self, path: str | os.PathLike, timeout: float, what: str = "") -> None:
        self.path, self.timeout = Path(path), timeout
        self.what = what or str(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock: True once held, False where the file system cannot lock.

        Raises :class:`LockTimeout` when another process holds it for ``timeout`` seconds,
        and OSError when the lock file cannot be opened.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: renames still keep files whole
            return False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # busy: wait, at most timeout (the wait owns fd from here)
            if not _wait_for_lock(fcntl, fd, self.timeout):
                raise LockTimeout(
                    f"{self.what}: another process has held its lock for over "
                    f"{self.timeout:g} s (is it stopped or hung?)"
                ) from None
        except OSError:  # this file system cannot lock (some network file systems)
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Let the lock go (nothing happens if it is not held)."""
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _wait_for_lock(fcntl: Any, fd: int, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for the lock on ``fd``: True once held.

    The wait is a blocking ``flock``, so the kernel hands the lock over the moment it is
    free: polling instead (sleep, try again) leaves the lock idle between tries, and handing
    it over through a second thread cost a busy journal a quarter of its trials per second
    (``experiments/benchmarks/load.py``). So the main thread waits itself, with a one-shot
    SIGALRM to stop waiting; other threads, or a process whose SIGALRM is in use, wait in a
    helper thread. On False or an exception (Ctrl-C), ``fd`` is closed (by the helper thread
    if it has one, letting go of the lock at once if it gets it later).
    """
    if _alarm_is_free():
        return _wait_with_alarm(fcntl, fd, timeout)
    return _wait_in_thread(fcntl, fd, timeout)


class _WaitedTooLong(Exception):
    pass


def _alarm_is_free() -> bool:
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN)
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )


def _wait_with_alarm(fcntl: Any, fd: int, timeout: float) -> bool:
    waiting = [True]

    def stop_waiting(signum: int, frame: object) -> None:
        if waiting[0]:  # one shot: after the lock is had it does nothing
            raise _WaitedTooLong

    previous = signal.signal(signal.SIGALRM, stop_waiting)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            waiting[0] = False
        except _WaitedTooLong:  # (also if it came just after the flock: its fd is closed)
            waiting[0] = False
            os.close(fd)
            return False
        except BaseException:
            waiting[0] = False
            os.close(fd)
            raise
    finally:
        waiting[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return True


def _wait_in_thread(fcntl: Any, fd: int, timeout: float) -> bool:
    held = threading.Event()
    guard = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "error": None}

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            state["error"] = err
        with guard:
            if not state["abandoned"]:
                held.set()
                return
        if state["error"] is None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    threading.Thread(target=wait, name="file-lock-wait", daemon=True).start()
    try:
        held.wait(timeout)
    except BaseException:  # Ctrl-C while waiting: give up, and let go if it was just had
        with guard:
            state["abandoned"] = True
            got = held.is_set()
        if got:
            if state["error"] is None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        raise
    with guard:
        if not held.is_set():
            state["abandoned"] = True
            return False
    if state["error"] is not None:
        os.close(fd)
        raise state["error"]
    return True


def file_lock(path: str | os.PathLike, timeout: float, what: str = "") -> FileLock:
    """An exclusive lock on ``path`` with a bounded wait, for a ``with`` block.

    ``with file_lock(path, 30, "journal x") as held:`` waits at most 30 s (then raises
    :class:`LockTimeout` naming ``what``); ``held`` is False where the file system cannot
    lock. See :class:`FileLock`.
    """
    return FileLock(path, timeout, what)
