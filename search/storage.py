"""Where studies live: an Optuna storage opened from a URL, and URLs shown without passwords.

By default a study is one journal file, ``results/<study>/journal.log`` (see
:mod:`mlpsearch.journal`). ``--storage URL`` takes any Optuna RDB URL
(``postgresql+psycopg2://...``, ``sqlite:///...``), or ``journal:PATH`` for a journal file
elsewhere. RDB storages get Optuna's heartbeat and the retry of stale trials
(:mod:`mlpsearch.liveness`).
"""

from __future__ import annotations

import hashlib
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
from mlpsearch.masking import mask, register
from mlpsearch.postgres import check_room, quiet_logs

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


def open_storage(
    url: str, create: bool = True, *, read_only: bool = False, connections: int = 0
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; a bad URL raises ConfigError with one line.

    Parameters
    ----------
    url : ``journal:PATH``, or an SQLAlchemy URL (``postgresql+psycopg2://...``,
        ``sqlite:///file.db``).
    create : False: the storage must already exist (joining a study).
    read_only : for the commands that only read (report, compare, rerun): the storage must
        exist and hold Optuna's tables; nothing is created, repaired, locked or written (a
        journal is read without its lock, SQLite is opened with ``mode=ro``, PostgreSQL in a
        read-only session).
    connections : PostgreSQL connections the caller will open; a database without room for
        them is refused before anything is created (:func:`mlpsearch.postgres.check_room`).

    A file that is not ours is never written into: a journal path holding anything but a
    journal, or an SQLite file holding other tables than Optuna's, is refused untouched.
    """
    register(url)  # its password is hidden in everything shown from now on
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        if not create and not read_only and not path.is_file():
            raise ConfigError(f"--storage {url}: no journal file at {path}")
        return open_journal(path, read_only=read_only, create=create)
    if "://" not in url:
        raise ConfigError(
            f"--storage: {mask(url)!r} is not a storage URL; expected e.g. "
            "postgresql+psycopg2://user:password@host/db, sqlite:///file.db or journal:PATH"
        )
    quiet_logs()
    try:
        import sqlalchemy

        probe = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            must_exist = read_only or not create
            _check_database(probe, url, must_exist)
            if connections:
                check_room(probe, connections, url)
        finally:
            probe.dispose()
        if read_only:
            return RDBStorage(url, engine_kwargs=_read_only(url), skip_table_creation=True)
        # two processes creating the tables of a fresh database at once collide; take turns
        with _schema_lock(url):
            return RDBStorage(
                url,
                engine_kwargs=None if url.startswith("sqlite") else POOL,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=Retry(max_retry=MAX_RETRY),
            )
    except ConfigError:
        raise
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


#: Tables every Optuna RDB storage has.
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def _check_database(engine: Any, url: str, must_exist: bool) -> None:
    """Refuse a database that is not Optuna's (or, ``must_exist``, holds no study tables)
    before anything is created in it: SQLite files are looked at read-only first."""
    import sqlalchemy

    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return
        path = Path(database)
        if not path.exists():
            if must_exist:
                raise ConfigError(f"--storage {mask(url)}: no database file at {path}")
            return
        if not path.is_file():
            raise ConfigError(f"--storage {mask(url)}: {path} is not a file")
        if path.stat().st_size == 0:
            tables: set[str] = set()
        else:
            tables = _sqlite_tables(path, url)
    else:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    if OPTUNA_TABLES <= tables:
        return
    if must_exist:
        raise ConfigError(
            f"--storage {mask(url)}: holds no Optuna study tables"
            + (f" (it holds {_names(tables)})" if tables else " (it is empty)")
            + "; nothing to read, and nothing is created"
        )
    if tables and engine.dialect.name == "sqlite":
        raise ConfigError(
            f"--storage {mask(url)}: an SQLite database of another program (tables "
            f"{_names(tables)}, none of Optuna's); not touched: give a new file"
        )


def _sqlite_tables(path: Path, url: str) -> set[str]:
    import sqlite3
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise ConfigError(
            f"--storage {mask(url)}: {path} is not an SQLite database ({err}); not touched"
        ) from None
    return {name for (name,) in rows}


def _names(tables: set[str]) -> str:
    shown = sorted(tables)
    return ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")


def _read_only(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options that make every connection read-only."""
    if url.startswith("sqlite"):
        import sqlite3
        from urllib.parse import quote

        import sqlalchemy

        path = Path(sqlalchemy.engine.make_url(url).database or "").resolve()
        target = f"file:{quote(str(path))}?mode=ro"
        return {"creator": lambda: sqlite3.connect(target, uri=True, check_same_thread=False)}
    if url.startswith("postgresql"):
        return {"connect_args": {"options": "-c default_transaction_read_only=on"}}
    return {}


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
