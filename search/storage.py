"""Where studies live: an Optuna storage opened from a URL, and URLs shown without passwords.

By default a study is one journal file, ``results/<study>/journal.log`` (see
:mod:`mlpsearch.journal`). ``--storage URL`` takes any Optuna RDB URL
(``postgresql+psycopg2://...``, ``sqlite:///...``), or ``journal:PATH`` for a journal file
elsewhere. RDB storages get Optuna's heartbeat and the retry of stale trials
(:mod:`mlpsearch.liveness`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from mlpsearch.engine.files import LockTimeout, file_lock
from mlpsearch.errors import ConfigError
from mlpsearch.journal import open_journal
from mlpsearch.liveness import GRACE_SECONDS, HEARTBEAT_SECONDS, MAX_RETRY, Retry

#: Longest wait for a lock another process holds while it plans a study or creates tables.
LOCK_SECONDS = 300.0

#: The connection pool of each process on a database server. A process uses at most two
#: connections at once (a worker's main thread and its heartbeat; a parent and its planning
#: lock), so two stay open and two more may open for a moment: 32 workers hold about 70
#: connections (PostgreSQL's default max_connections is 100). No ping before each use: that
#: would double the round trips of a trial's many small writes, and a connection lost with
#: the server stops the run anyway (exit 1, resumable).
POOL = {"pool_size": 2, "max_overflow": 2}


def default_url(results: Path, study: str) -> str:
    """The storage of a study that names none: ``journal:<results>/<study>/journal.log``."""
    return f"journal:{results / study / 'journal.log'}"


# user:password@ of a URL: the password runs to the token's last "@" (unencoded "@" or "/" in a
# password must not leak either); and password=... in a query string (psycopg2 accepts both)
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^\s:/@]*:)\S*@")
_QUERY_PASSWORD = re.compile(r"\b(password|passwd|pwd)=[^&\s'\"]*", re.IGNORECASE)


def mask(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    For anything printed or written: messages, experiment.toml, progress lines, resume hints.
    """
    return _QUERY_PASSWORD.sub(r"\1=***", _USERINFO.sub(r"\1***@", text))


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL raises ConfigError with one line.

    ``create=False``: a journal file must already exist (for joining a study).
    """
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
                engine_kwargs=None if url.startswith("sqlite") else POOL,
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


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with database_lock(engine, "mlpsearch:schema"):
            yield
    finally:
        engine.dispose()


@contextmanager
def database_lock(engine: Any, name: str, timeout: float = LOCK_SECONDS) -> Iterator[None]:
    """A lock named ``name`` shared by every process using the database of ``engine``.

    PostgreSQL: a session advisory lock (the server releases it if we die). A SQLite file: a
    file lock beside it (``<file>.plan``). Other databases: none. Waits at most ``timeout``
    seconds, then raises LockTimeout.
    """
    import sqlalchemy

    if engine.dialect.name != "postgresql":
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            database = engine.url.database
            with file_lock(f"{database}.plan", timeout, f"database {database}"):
                yield
        else:
            yield
        return
    key = int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )
    with engine.connect() as conn:
        # for this transaction only: the connection goes back to Optuna's pool afterwards
        limit = {"ms": str(int(timeout * 1000))}
        conn.execute(sqlalchemy.text("SELECT set_config('lock_timeout', :ms, true)"), limit)
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        except sqlalchemy.exc.OperationalError as err:
            if getattr(err.orig, "pgcode", None) != "55P03":  # lock_not_available
                raise
            raise LockTimeout(
                f"database {mask(str(engine.url))}: another process has held the lock "
                f"{name!r} for over {timeout:g} s (is it stopped or hung?)"
            ) from None
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()
