"""Where studies live: Optuna storages, heartbeats, and trials of workers that died.

By default a study is one journal file, ``results/<study>/journal.log`` (Optuna's
``JournalStorage`` with ``JournalFileBackend``: safe for several processes, unlike SQLite).
``--storage URL`` takes any Optuna RDB URL (``postgresql+psycopg2://...``, ``sqlite:///...``),
or ``journal:PATH`` for a journal file elsewhere.

Optuna's journal storage has no heartbeat, so each running trial carries its worker's identity
and a heartbeat time in its system attributes. A RUNNING trial is *stale* when its worker is a
process of this host that no longer exists, or when its heartbeat is older than the grace
period. Stale trials are failed and re-queued with the same parameters, slot and seed by
Optuna's ``RetryHeartbeatStaleTrialCallback``. RDB storages use
Optuna's own heartbeat instead (timed by the database server, so the machines' clocks do not
matter), with the same callback.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from mlpsearch.errors import ConfigError
from mlpsearch.masking import mask, register

# fail_stale_trials and the retry callback are stable in practice but still flagged experimental
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

HEARTBEAT_SECONDS = 5  # how often a running trial says it is alive
GRACE_SECONDS = 60  # silence after which a trial of another host is taken for dead
CLAIM_GRACE_SECONDS = 15  # a claimed trial's worker names itself within milliseconds
MAX_RETRY = 3  # how often one configuration is re-queued after its worker died

WORKER_KEY = "mlpsearch:worker"  # "host:pid:start" of the process running the trial
BEAT_KEY = "mlpsearch:heartbeat"  # time.time() of the last heartbeat


def default_url(results: Path, study: str) -> str:
    return f"journal:{results / study / 'journal.log'}"


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL raises ConfigError with one line.

    ``create=False``: a journal file must already exist (for joining a study).
    """
    register(url)  # its password is hidden in everything shown from now on
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        if not create and not path.is_file():
            raise ConfigError(f"--storage {url}: no journal file at {path}")
        return open_journal(path)
    if "://" not in url:
        raise ConfigError(
            f"--storage: {mask(url)!r} is not a storage URL; expected e.g. "
            "postgresql+psycopg2://user:password@host/db, sqlite:///file.db or journal:PATH"
        )
    try:
        # two processes creating the tables of a fresh database at once collide; take turns
        with _schema_lock(url):
            return RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=Retry(max_retry=MAX_RETRY),
            )
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"--storage {mask(url)}: the database driver is not installed ({err.name}); "
            "for PostgreSQL: pip install psycopg2-binary"
        ) from None
    except Exception as err:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"--storage {mask(url)}: cannot open the storage: {mask(first)}"
        ) from None


def open_journal(path: Path) -> JournalStorage:
    """The journal file at ``path``, created if missing, repaired if its last write was cut."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"journal {path}: exists and is not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"folder {path.parent} is not writable")
        lock = FlockLock(str(path))
        with lock:
            _cut_partial_record(path)
        storage = JournalStorage(JournalBackend(str(path), lock_obj=lock))
    except (OSError, PermissionError) as err:
        raise ConfigError(f"journal {path}: cannot open for writing: {err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"journal {path}: damaged ({err}); not opened") from None
    return storage


class JournalBackend(JournalFileBackend):
    """Optuna's journal file, whose failed appends leave no trace.

    A write that fails half way (disk full, quota) would leave a partial line that corrupts the
    next record appended after it; the file is cut back to where the write began.
    """

    def __init__(self, file_path: str, lock_obj: FlockLock) -> None:
        super().__init__(file_path, lock_obj=lock_obj)
        self.path = Path(file_path)
        self.lock = lock_obj

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


class FlockLock:
    """An ``fcntl.flock`` lock beside the journal: the kernel releases it when its holder dies.

    Optuna's own file locks are files that a process killed while holding them leaves behind,
    stalling every other worker for their grace period (30 s).
    """

    def __init__(self, journal: str) -> None:
        self._path = journal + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FlockLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
        aside.write_bytes(data[keep:])
        f.truncate(keep)
    print(
        f"mlpsearch: warning: journal {path}: its last record was cut short (a writer was "
        f"killed); set it aside in {aside.name}",
        file=sys.stderr,
    )


# --- one planner at a time ------------------------------------------------------------------


@contextmanager
def planning_lock(storage: optuna.storages.BaseStorage, study_name: str) -> Iterator[None]:
    """Held while a parent creates or loads a study and enqueues its slots.

    Two ``mlpsearch run`` started at the same moment on a fresh study would otherwise both
    see no slot taken and enqueue every slot twice. Journal and SQLite files: an flock beside
    the file; PostgreSQL: a session advisory lock (released by the server if we die).
    """
    if isinstance(storage, JournalStorage) and isinstance(storage._backend, JournalBackend):
        lock: Any = FlockLock(f"{storage._backend.path}.plan")
    elif isinstance(storage, RDBStorage):
        lock = _database_lock(storage.engine, f"mlpsearch:plan:{study_name}")
    else:
        lock = nullcontext()
    with lock:
        yield


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with _database_lock(engine, "mlpsearch:schema"):
            yield
    finally:
        engine.dispose()


@contextmanager
def _database_lock(engine: Any, name: str) -> Iterator[None]:
    """A PostgreSQL session advisory lock named ``name`` (other databases: none)."""
    import sqlalchemy

    if engine.dialect.name != "postgresql":
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            with FlockLock(f"{engine.url.database}.plan"):
                yield
        else:
            yield
        return
    key = int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


# --- who runs a trial, and is it still alive -------------------------------------------------


def worker_identity() -> str:
    """``host:pid:start``: start (from /proc) tells a reused pid from the original process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie has finished running
            return "zombie"
        return fields[19]
    except (OSError, IndexError):
        return "gone"


def is_dead(identity: str) -> bool:
    """Whether the worker ``identity`` is certainly dead (only knowable on its own host)."""
    host, pid, start = identity.rsplit(":", 2)
    if host != socket.gethostname():
        return False
    return _start_time(int(pid)) != start


class Heartbeat:
    """Marks a running trial as alive: at start, on :meth:`beat`, and from a thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._last = 0.0
        self.beat()  # before the identity: a trial with an identity always has a heartbeat
        storage.set_trial_system_attr(trial_id, WORKER_KEY, worker_identity())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def beat(self) -> None:
        now = time.time()
        if now - self._last < 1.0:  # epochs of small networks take milliseconds
            return
        self._last = now
        try:
            self.storage.set_trial_system_attr(self.trial_id, BEAT_KEY, now)
            if isinstance(self.storage, RDBStorage):
                self.storage.record_heartbeat(self.trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._stop.set()  # somebody failed this trial as stale; nothing more to say

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception:  # a full disk, a lost connection: the trial's own writes say so
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Retry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, without what belonged to the dead run.

    The copy would otherwise inherit the dead worker's identity and last heartbeat (and look
    dead itself the moment a new worker claims it) and its failure reason.
    """

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.system_attrs = {
            k: v for k, v in trial.system_attrs.items() if k not in (WORKER_KEY, BEAT_KEY)
        }
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in ("slot", "seed")}
        super().__call__(study, trial)


def fail_stale(
    study: optuna.Study, storage: optuna.storages.BaseStorage, grace: float = GRACE_SECONDS
) -> list[int]:
    """Fail the RUNNING trials whose worker died and re-queue them; their numbers.

    A worker is dead when it is a process of this host that no longer exists, or (RDB) when
    Optuna's heartbeat, timed by the database server's clock, is older than the grace period,
    or (journal) when its own heartbeat is. Each failed trial says why in ``fail_reason``.
    """
    now = time.time()
    rdb = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None
    stale: dict[int, str] = {}
    if rdb:  # Optuna's heartbeat: what optuna.storages.fail_stale_trials looks at
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            stale[trial_id] = f"worker silent for over {grace:.0f} s (no heartbeat)"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in stale:
            continue
        identity = trial.system_attrs.get(WORKER_KEY)
        beat = trial.system_attrs.get(BEAT_KEY, now)
        if identity is None:  # claimed, and its worker not yet known (or it died naming itself)
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - started <= min(grace, CLAIM_GRACE_SECONDS):
                continue
            stale[trial._trial_id] = "worker never started the trial"
        elif is_dead(identity):
            stale[trial._trial_id] = f"worker {identity.rsplit(':', 1)[0]} died"
        elif not rdb and now - beat > grace:
            stale[trial._trial_id] = (
                f"worker {identity.rsplit(':', 1)[0]} silent for {now - beat:.0f} s"
            )
    retry = Retry(max_retry=MAX_RETRY)
    failed = []
    for trial_id, reason in stale.items():
        trial = storage.get_trial(trial_id)
        if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRY:
            reason += f"; not re-queued again (already retried {MAX_RETRY} times)"
        else:
            reason += "; re-queued"
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        retry(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def claim_waiting(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int | None:
    """Atomically take a WAITING trial (WAITING -> RUNNING); its id, or None if none is left.

    Like ``Study.ask`` without its fallback of creating a fresh trial, so that a study never
    runs more trials than it enqueued, however many workers race for the last one.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None
