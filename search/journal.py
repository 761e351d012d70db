"""The journal file: Optuna's ``JournalStorage`` on one file, safe for several processes.

Appends take an ``flock`` beside the journal (``journal.log.flock``), which the kernel releases
when its holder dies; Optuna's own file locks are files that a killed holder leaves behind,
stalling every other worker for their grace period. The lock is a lease: when its holder is a
process of this host that is stopped (SIGSTOP, Ctrl-Z) or gone, the others append without it
(one ``O_APPEND`` write per batch of records, which the kernel never interleaves), so a paused
worker freezes nobody and its trial is taken over when its heartbeat goes silent. A holder
that is running but does not let go within :data:`JOURNAL_LOCK_SECONDS`, or one on another
host, makes the others stop with a one-line error. A write cut short (a full disk, a killed
writer) never leaves a partial record that would make the records after it unreadable.

Readers (``report``, ``compare``, ``rerun``) open the journal read-only
(:func:`open_journal` with ``read_only``): no lock, no repair, nothing created. A file that is
not a journal (its first record is not Optuna's) is refused untouched, and a damaged record
(unknown operation, missing fields, not JSON) stops every command with one line naming it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalStorage

from mlpsearch.engine.files import FileLock, LockTimeout, write_atomic
from mlpsearch.errors import ConfigError

#: Longest wait for the journal's lock held by a running process; appends hold it for
#: milliseconds.
JOURNAL_LOCK_SECONDS = 30.0
#: How long a waiting process waits in the kernel before it looks again whether the lock's
#: holder is stopped or gone.
LEASE_CHECK_SECONDS = 1.0


def open_journal(path: Path, read_only: bool = False, create: bool = True) -> JournalStorage:
    """The journal file at ``path``: created if missing (``create``), repaired if its last
    write was cut; or, ``read_only``, only read (it must exist; nothing is written or locked).

    Bad input (not a file, not a journal, unwritable, damaged, a file system that cannot
    lock) raises ConfigError; a lock held too long by a running process raises LockTimeout.
    """
    if path.exists() and not path.is_file():
        raise ConfigError(f"journal {path}: exists and is not a file")
    if (read_only or not create) and not path.is_file():
        raise ConfigError(f"no study journal at {path}")
    _check_is_journal(path)
    if read_only:
        return Journal(ReadOnlyBackend(str(path)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"folder {path.parent} is not writable")
        lock = JournalLock(path)
        with lock as held:
            if not held and not lock.lease_broken:
                raise ConfigError(
                    f"journal {path}: its file system cannot lock files, so processes would "
                    "overwrite each other; use a local folder or a database (--storage URL)"
                )
            if held:  # a stopped holder may be half way through its write: not ours to cut
                _cut_partial_record(path)
        storage = Journal(JournalBackend(str(path), lock))
    except (LockTimeout, ConfigError):
        raise
    except OSError as err:
        raise ConfigError(f"journal {path}: cannot open for writing: {err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"journal {path}: damaged ({err}); not opened") from None
    return storage


def journal_path(storage: Any) -> Path | None:
    """The file of a journal storage opened by :func:`open_journal`; None for any other."""
    if isinstance(storage, JournalStorage) and isinstance(storage._backend, _Reading):
        return storage._backend.path
    return None


class DamagedJournal(ConfigError):
    """A journal record that Optuna cannot replay: tampered with, or not a journal at all."""


class Journal(JournalStorage):
    """Optuna's journal storage, whose damaged records are one line (exit 2), not a traceback.

    Optuna replays every record on each read; a record with an unknown operation or missing
    fields fails deep inside the replay (AssertionError, KeyError, TypeError).
    """

    def _sync_with_backend(self) -> None:
        try:
            super()._sync_with_backend()
        except DamagedJournal:
            raise
        except (KeyError, TypeError, ValueError, AssertionError, AttributeError, IndexError) as e:
            number = self._replay_result.log_number_read
            raise DamagedJournal(
                f"journal {self._backend.path}: record {number} is damaged or not Optuna's "
                f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); not used"
            ) from None


class _Reading:
    """Reading the journal (as Optuna's ``JournalFileBackend.read_logs``, which it replaces):
    every complete line must be a JSON record of a known operation, else DamagedJournal; an
    incomplete last line is a write in progress (or cut short) and is not read yet."""

    path: Path
    _log_number_offset: dict[int, int]

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size  # what others append meanwhile: next time
            first = 0
            if log_number_from in self._log_number_offset:
                f.seek(self._log_number_offset[log_number_from])
                first = log_number_from
                remaining -= self._log_number_offset[log_number_from]
            for number, line in enumerate(f, start=first):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    return
                self._log_number_offset.setdefault(
                    number + 1, self._log_number_offset[number] + len(line)
                )
                if number >= log_number_from:
                    yield self._record(line, number + 1)

    def _record(self, line: bytes, number: int) -> dict[str, Any]:
        try:
            log = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise DamagedJournal(
                f"journal {self.path}: record {number} is not JSON; damaged or not a journal"
            ) from None
        if not isinstance(log, dict) or not isinstance(log.get("op_code"), int):
            raise DamagedJournal(
                f"journal {self.path}: record {number} is not an Optuna journal record; damaged"
            )
        if log["op_code"] not in _OP_CODES:
            raise DamagedJournal(
                f"journal {self.path}: record {number} has an unknown operation (op_code "
                f"{log['op_code']}); damaged or written by another program"
            )
        return log


_OP_CODES = frozenset(range(11))  # Optuna's JournalOperation: CREATE_STUDY .. DISCARD_TRIALS


class ReadOnlyBackend(_Reading, JournalFileBackend):
    """The journal file, only read: no lock, no repair, nothing created or appended."""

    def __init__(self, file_path: str) -> None:
        self._file_path = file_path
        self._log_number_offset: dict[int, int] = {0: 0}
        self.path = Path(file_path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise RuntimeError(f"journal {self.path} was opened read-only")  # a bug if reached


class JournalBackend(_Reading, JournalFileBackend):
    """Optuna's journal file, whose failed appends leave no trace.

    A write that fails half way (disk full, quota) would leave a partial line that corrupts the
    next record appended after it; the file is cut back to where the write began (when the
    lock is held: without it, another process may have appended after us).
    """

    def __init__(self, file_path: str, lock: JournalLock) -> None:
        super().__init__(file_path, lock_obj=lock)
        self.path = Path(file_path)
        self.lock = lock

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        with self.lock as held:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError as err:
                    if held:
                        os.ftruncate(fd, start)
                    raise OSError(err.errno, err.strerror, str(self.path)) from None
                except BaseException:  # Ctrl-C between two partial writes: none of it
                    if held:
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)


class JournalLock:
    """The journal's append lock: an ``flock`` with a bounded wait, and a lease.

    Before each wait it looks who holds the lock (``/proc/locks``): if the holder is a process
    of this host that is stopped or gone, the lease is broken and the append goes ahead without
    the lock (``lease_broken``; one ``O_APPEND`` write). Otherwise it waits in the kernel, a
    second at a time, looking again between waits; a running holder that keeps the lock for
    :data:`JOURNAL_LOCK_SECONDS` raises LockTimeout. Used by one thread at a time (Optuna's
    journal storage serialises its writes).
    """

    def __init__(self, journal: Path) -> None:
        self.path = Path(f"{journal}.flock")
        self._lock = FileLock(self.path, LEASE_CHECK_SECONDS, what=f"journal {journal}")
        self.journal = journal
        self.lease_broken = False
        self._held = False

    def acquire(self) -> bool:
        deadline = time.monotonic() + JOURNAL_LOCK_SECONDS
        self.lease_broken = False
        while True:
            holder = flock_holder(self.path)
            if holder not in (None, os.getpid()) and process_state(holder) in PAUSED:
                self.lease_broken = True
                return False
            try:
                self._held = self._lock.acquire()
                return self._held
            except LockTimeout:
                if time.monotonic() >= deadline:
                    holder = flock_holder(self.path)
                    who = f"process {holder}" if holder else "another process"
                    raise LockTimeout(
                        f"journal {self.journal}: {who} has held its lock for over "
                        f"{JOURNAL_LOCK_SECONDS:g} s (is it hung, or on another machine?)"
                    ) from None

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


#: Process states of a lock holder whose lease others may break: stopped, traced, dead.
PAUSED = ("T", "t", "Z", "X", "gone")


def flock_holder(path: Path) -> int | None:
    """The pid holding an ``flock`` on ``path``, from ``/proc/locks`` (None if unknown)."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 12345 fe:00:2211899 0 EOF"; waiters have "->"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[1] != "->":
                    if int(fields[5].rsplit(":", 1)[1]) == inode:
                        return int(fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_state(pid: int) -> str:
    """The state letter of process ``pid`` of this host (R, S, D, T, t, Z...), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _check_is_journal(path: Path) -> None:
    """Refuse, untouched, an existing non-empty file whose first record is not Optuna's."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    try:
        record = json.loads(first)
        ok = isinstance(record, dict) and record.get("op_code") == 0 and "study_name" in record
    except (ValueError, UnicodeDecodeError):
        # a journal whose first record was cut short by a killed writer is still a journal
        ok = not first.endswith(b"\n") and first.replace(b" ", b"").startswith(b'{"op_code":0,')
    if not ok:
        raise ConfigError(
            f"journal {path}: not an Optuna journal (its first line is not a study record); "
            "not touched: give a new file or the journal of a study"
        )


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
