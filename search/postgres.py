"""What a PostgreSQL storage needs beyond Optuna's RDB storage: room for our connections, checked
before anything is created, and quiet logs when the database goes away.

A run opens about :func:`connections_needed` connections at once (each worker process talks to
the database from its trial loop and from its heartbeat thread; the parent watches progress and
holds the planning lock). PostgreSQL refuses connections beyond the role's ``rolconnlimit``,
the database's ``datconnlimit`` or the server's ``max_connections`` (less the slots reserved
for superusers): :func:`check_room` reads all three and the connections already in use, and
refuses, with one line, a run that would hit one of them after the study was created.
"""

from __future__ import annotations

import logging
from typing import Any

from mlpsearch.errors import ConfigError
from mlpsearch.masking import mask

#: Connections of one worker process: its trial loop and its heartbeat thread.
PER_WORKER = 2
#: Connections of the parent: its storage's pool (progress, planning) and the advisory locks
#: of planning and of table creation; 5 and 7 were measured at the peak of runs of 1 and 2
#: workers.
PARENT = 3

_ROOM = """
SELECT r.rolconnlimit, r.rolsuper,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.usename = current_user),
       d.datconnlimit,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database()),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend')
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""


def connections_needed(n_workers: int, parent: bool = True) -> int:
    """Connections a run (``parent``) or a ``worker`` command with ``n_workers`` opens."""
    return PER_WORKER * n_workers + (PARENT if parent else 1)


def check_room(engine: Any, needed: int, url: str) -> None:
    """Refuse (ConfigError, one line) when fewer than ``needed`` more connections may be opened.

    ``engine`` is a SQLAlchemy engine on the storage's database, whose connection is closed
    after the check (any other database: nothing is checked).
    """
    if engine.dialect.name != "postgresql":
        return
    import sqlalchemy

    with engine.connect() as conn:
        row = conn.execute(sqlalchemy.text(_ROOM)).one()
    role_limit, superuser, role_used, db_limit, db_used, max_conn, reserved, total = row
    role_used, db_used, total = role_used - 1, db_used - 1, total - 1  # not the check's own
    limits = []
    if role_limit >= 0 and not superuser:
        limits.append((role_limit - role_used, f"the role's connection limit {role_limit}"))
    if db_limit >= 0:
        limits.append((db_limit - db_used, f"the database's connection limit {db_limit}"))
    server = max_conn - (0 if superuser else reserved)
    limits.append((server - total, f"the server's max_connections {max_conn}"))
    free, which = min(limits)
    if free < needed:
        raise ConfigError(
            f"--storage {mask(url)}: only {max(free, 0)} more connection(s) may be opened "
            f"({which}, with those in use), and this run needs up to {needed} "
            f"({PER_WORKER} per worker process); lower --jobs or raise the limit"
        )


def check_storage_room(storage: Any, needed: int, url: str) -> None:
    """:func:`check_room` on an open storage (a PostgreSQL RDB storage; others: nothing)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        check_room(engine, needed, url)


#: Loggers of the database layers: Optuna's storages, SQLAlchemy (and its pool), Alembic.
QUIET_LOGGERS = ("optuna.storages", "sqlalchemy", "alembic")


def quiet_logs() -> None:
    """Keep what the database layers log off stderr: one line of ours says what happened.

    When the database goes away, Optuna warns with the failed SQL statement and its parameters
    (``Caught an error from sqlalchemy``), and SQLAlchemy's pool logs its own errors with
    tracebacks. Each of :data:`QUIET_LOGGERS` gets a handler that drops everything and stops
    propagating, so no record under it reaches Optuna's stderr handler (or Python's
    last-resort one) whatever level is set later (Optuna sets Alembic's, ``set_verbosity``
    Optuna's). Our own messages are not logged: they are printed, and stay. Called by every
    process that opens a storage (the parent, each worker) before it opens one.
    """
    for name in QUIET_LOGGERS:
        quiet = logging.getLogger(name)
        quiet.setLevel(logging.CRITICAL + 1)
        quiet.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
            quiet.addHandler(logging.NullHandler())
