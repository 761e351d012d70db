"""PostgreSQL, hostile: a password full of URL syntax never shown or stored by any command, and a
role's connection limit refused before anything is created."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow  # studies on a PostgreSQL server, in subprocesses

NASTY = "p@ss:w/rd Tw0'\"%X&y=1?z#"  # every character that means something in a URL
PIECES = [NASTY, "w/rd Tw0", "Tw0'", "%X&y=1", quote(NASTY, safe=""), "rd%20Tw0"]


def role(server, password: str, limit: int = -1) -> tuple[str, str]:
    """A new role with ``password`` owning a new database: (role, database)."""
    name = "r_" + uuid.uuid4().hex[:10]
    literal = password.replace("'", "''")
    server.query(f"CREATE ROLE {name} LOGIN PASSWORD '{literal}' CONNECTION LIMIT {limit}")
    server.query(f"CREATE DATABASE {name} OWNER {name}")
    return name, name


def test_a_password_made_of_url_syntax_is_never_shown_or_stored(
    postgres, tmp_path, write_experiment, cli
):
    name, db = role(postgres, NASTY)
    url = f"postgresql+psycopg2://{name}:{quote(NASTY, safe='')}@127.0.0.1:{postgres.port}/{db}"
    in_query = (
        f"postgresql+psycopg2://127.0.0.1:{postgres.port}/{db}?user={name}"
        f"&password={quote(NASTY, safe='')}"
    )
    path = write_experiment(tmp_path / "e.toml", "nasty", n_trials=3, n_jobs=1, epochs=2)
    runs = [
        cli("run", str(path), "--storage", url, cwd=tmp_path),
        cli("report", "--storage", in_query, "--study", "nasty", cwd=tmp_path),
        cli("compare", "--storage", url, "--study", "nasty", "0", "1", cwd=tmp_path),
        cli("rerun", "--storage", url, "--study", "nasty", cwd=tmp_path),
        cli("worker", "--storage", in_query, "--study", "nasty", cwd=tmp_path),
        # unencoded: psycopg2 cannot even parse it; refused, still hidden
        cli(
            "report",
            "--storage",
            url.replace(quote(NASTY, safe=""), NASTY),
            "--study",
            "nasty",
            cwd=tmp_path,
        ),  # fmt: skip
    ]
    for r in runs[:5]:
        assert r.returncode == 0, r.stderr
    assert runs[5].returncode == 2 and len(runs[5].stderr.splitlines()) == 1, runs[5].stderr
    files = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"experiment.toml", "trials.csv", "report.html", "best.toml"} <= names
    texts = [r.stdout + r.stderr for r in runs] + [p.read_bytes().decode("latin-1") for p in files]
    for text in texts:
        for piece in PIECES:
            assert piece not in text
    stored = _dump(postgres, db)
    for piece in PIECES:
        assert piece not in stored


def _dump(server, database: str) -> str:
    ((text,),) = server.query(
        "SELECT string_agg(value_json, ' ') FROM ("
        "SELECT value_json FROM study_user_attributes UNION ALL "
        "SELECT value_json FROM study_system_attributes UNION ALL "
        "SELECT value_json FROM trial_user_attributes UNION ALL "
        "SELECT value_json FROM trial_system_attributes) a",
        database,
    )
    return text or ""


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_connection_limit_is_checked_before_anything_is_created(
    postgres, tmp_path, jobs, write_experiment, cli
):
    name, db = role(postgres, "limited-Pw1", limit=5)
    url = f"postgresql+psycopg2://{name}:limited-Pw1@127.0.0.1:{postgres.port}/{db}"
    path = write_experiment(tmp_path / "e.toml", "lim", n_trials=2, n_jobs=jobs, epochs=2)
    r = cli("run", str(path), "--storage", url, cwd=tmp_path)
    if jobs == 1:  # 2 per worker process and 3 for the parent: fits in 5
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.splitlines()
    assert "connection limit 5" in line and "needs up to" in line and "--jobs" in line
    assert "limited-Pw1" not in r.stdout + r.stderr
    tables = postgres.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", db)
    assert tables == [(0,)]  # not even Optuna's tables
    assert not (tmp_path / "results").exists()


QUIET = """
import logging, sys
import optuna
from optuna.storages import _rdb  # noqa: F401  (Optuna's RDB storage and its logger)
from mlpsearch.postgres import quiet_logs

quiet_logs()
optuna.logging.set_verbosity(optuna.logging.DEBUG)  # anything may raise levels again later
for name in ("optuna.storages._rdb.storage", "sqlalchemy.pool.impl.QueuePool", "alembic"):
    logging.getLogger(name).setLevel(logging.DEBUG)
optuna.logging.get_logger("optuna.storages._rdb.storage").warning(
    "Caught an error from sqlalchemy: [SQL: SELECT 1] [parameters: {'password': 'pw'}]"
)
try:
    raise ConnectionError("server closed the connection")
except ConnectionError:
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").exception("Exception during reset")
logging.getLogger("alembic.runtime.migration").warning("Context impl PostgresqlImpl.")
optuna.logging.get_logger("optuna.study").warning("ours to keep: not a database layer")
print("mlpsearch: error: lost the storage", file=sys.stderr)
"""


def test_the_database_layers_say_nothing_on_stderr_whatever_levels_are_set_later():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1] == "mlpsearch: error: lost the storage"
    assert len(lines) == 2 and "ours to keep" in lines[0], r.stderr  # Optuna's own, not SQL
    assert "SQL" not in r.stderr and "Traceback" not in r.stderr
