"""Two file chores done one way everywhere: atomic writes and bounded file locks (stdlib only).

Every file mlpsearch writes (model files, the data cache, result tables, plots, reports) goes
through :func:`write_atomic`: the content is written to a uniquely named temporary file in the
same folder and renamed over the target, so a reader sees the old file or the new one, never
half of one; concurrent writers never share a temporary name; a failed write (a full disk)
removes its temporary file and leaves the target as it was.

Every lock (the data cache's build lock, the journal's lock) is a :func:`file_lock` with a
bounded wait: a process that is stopped or hung while holding it makes the others give up with
:class:`LockTimeout` instead of waiting forever.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:  # POSIX; elsewhere locks are no-ops and atomic renames still keep files whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_POLL_SECONDS = 0.05


class LockTimeout(TimeoutError):
    """A lock was not had within its time limit (its holder is stopped, hung or slow)."""


def write_atomic(path: str | os.PathLike, content: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``content`` to ``path`` atomically.

    ``content`` is text (written as UTF-8), bytes, or a function that writes to the binary file
    object it is given (``np.savez``, ``figure.savefig``, ``df.to_csv`` all take one). The new
    file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask).
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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def file_lock(path: str | os.PathLike, timeout: float, what: str = "") -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), waiting at most ``timeout``.

    Yields True while the lock is held, or False where the file system cannot lock (then the
    caller proceeds unlocked, as atomic renames still keep files whole). Raises
    :class:`LockTimeout`, naming ``what`` (or the path), when the lock is not had in time.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield False
        return
    with open(path, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{what or path}: locked by another process for over {timeout:g} s "
                        "(is one stopped or hung?)"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
            except OSError:  # no locking on this file system
                yield False
                return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
