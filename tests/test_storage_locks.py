"""The locks around a storage: planning a study waits a bounded time on every storage."""

from __future__ import annotations

import time

import pytest
from pg import PASSWORD, postgres  # noqa: F401

from mlpsearch.engine.files import LockTimeout
from mlpsearch.storage import database_lock, open_storage
from mlpsearch.study import planning_lock


def test_planning_lock_on_a_journal_is_bounded(tmp_path):
    journal = tmp_path / "journal.log"
    storage = open_storage(f"journal:{journal}")
    other = open_storage(f"journal:{journal}")  # as another process would open it
    with planning_lock(storage, "s"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as err:
            with planning_lock(other, "s", timeout=0.5):
                pass
        assert 0.5 <= time.monotonic() - started < 10
    assert str(err.value).startswith(
        f"journal {journal} (planning): another process has held its lock for over 0.5 s"
    )
    with planning_lock(other, "s", timeout=0.5):  # free again
        pass


def test_planning_lock_on_sqlite_is_bounded(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    other = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with planning_lock(storage, "s"):
        with pytest.raises(LockTimeout, match="another process has held its lock"):
            with planning_lock(other, "s", timeout=0.3):
                pass
    with planning_lock(other, "s", timeout=0.3):
        pass


def test_planning_lock_on_postgresql_is_bounded_and_leaves_no_setting_behind(postgres):  # noqa: F811
    import sqlalchemy

    url = postgres.url(postgres.create_database())
    storage = open_storage(url)
    other = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with database_lock(other, "mlpsearch:plan:s"):  # another machine is planning
            started = time.monotonic()
            with pytest.raises(LockTimeout) as err:
                with database_lock(storage.engine, "mlpsearch:plan:s", timeout=1.0):
                    pass
            assert 1.0 <= time.monotonic() - started < 10
        message = str(err.value)
        assert "another process has held the lock 'mlpsearch:plan:s' for over 1 s" in message
        assert PASSWORD not in message
        with storage.engine.connect() as conn:  # Optuna's pooled connections: no time limit left
            assert conn.execute(sqlalchemy.text("SHOW lock_timeout")).scalar() == "0"
        with planning_lock(storage, "s"):  # free again
            pass
    finally:
        other.dispose()
