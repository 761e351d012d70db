"""The journal file: Optuna's ``JournalStorage`` on one file, safe for several processes.

Appends take an ``flock`` beside the journal (``journal.log.flock``), which the kernel releases
when its holder dies; Optuna's own file locks are files that a killed holder leaves behind,
stalling every other worker for their grace period. The wait is bounded
(:data:`JOURNAL_LOCK_SECONDS`): a holder stopped (SIGSTOP) or hung makes the others stop with a
one-line error instead of freezing. A write cut short (a full disk, a killed writer) never
leaves a partial record that would make the records after it unreadable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalStorage

from mlpsearch.engine.files import FileLock, LockTimeout, write_atomic
from mlpsearch.errors import ConfigError

#: Longest wait for the journal's lock; appends hold it for milliseconds.
JOURNAL_LOCK_SECONDS = 30.0


def open_journal(path: Path) -> JournalStorage:
    """The journal file at ``path``, created if missing, repaired if its last write was cut.

    Bad input (not a file, unwritable, damaged, a file system that cannot lock) raises
    ConfigError; a lock held too long by another process raises LockTimeout.
    """
    if path.exists() and not path.is_file():
        raise ConfigError(f"journal {path}: exists and is not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"folder {path.parent} is not writable")
        lock = FileLock(f"{path}.flock", JOURNAL_LOCK_SECONDS, what=f"journal {path}")
        with lock as held:
            if not held:
                raise ConfigError(
                    f"journal {path}: its file system cannot lock files, so processes would "
                    "overwrite each other; use a local folder or a database (--storage URL)"
                )
            _cut_partial_record(path)
        storage = JournalStorage(JournalBackend(str(path), lock))
    except (LockTimeout, ConfigError):
        raise
    except OSError as err:
        raise ConfigError(f"journal {path}: cannot open for writing: {err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"journal {path}: damaged ({err}); not opened") from None
    return storage


def journal_path(storage: Any) -> Path | None:
    """The file of a journal storage opened by :func:`open_journal`; None for any other."""
    if isinstance(storage, JournalStorage) and isinstance(storage._backend, JournalBackend):
        return storage._backend.path
    return None


class JournalBackend(JournalFileBackend):
    """Optuna's journal file, whose failed appends leave no trace.

    A write that fails half way (disk full, quota) would leave a partial line that corrupts the
    next record appended after it; the file is cut back to where the write began.
    """

    def __init__(self, file_path: str, lock: FileLock) -> None:
        super().__init__(file_path, lock_obj=lock)
        self.path = Path(file_path)
        self.lock = lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError as err:
                    os.ftruncate(fd, start)
                    raise OSError(err.errno, err.strerror, str(self.path)) from None
                except BaseException:  # Ctrl-C between two partial writes: none of it
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)


def _cut_partial_record(path: Path) -> None:
    """Set aside a last line that a killed writer left without its newline.

    Such a record was never completed (its writer never returned), so no finished trial is in
    it; but anything appended after it would be unreadable. The fragment is kept beside the
    journal and a warning names it.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        keep = data.rfind(b"\n") + 1
        aside = path.with_name(f"{path.name}.partial-{int(time.time())}")
        write_atomic(aside, data[keep:])
        f.truncate(keep)
    print(
        f"mlpsearch: warning: journal {path}: its last record was cut short (a writer was "
        f"killed); set it aside in {aside.name}",
        file=sys.stderr,
    )
