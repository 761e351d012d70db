"""PostgreSQL, hostile: a password full of URL syntax never shown or stored by any command, and a
role's connection limit refused before anything is created."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from pg import PASSWORD, USER, postgres  # noqa: F401
from test_search import write_experiment

ROOT = Path(__file__).resolve().parent.parent
NASTY = "p@ss:w/rd Tw0'\"%X&y=1?z#"  # every character that means something in a URL
PIECES = [NASTY, "w/rd Tw0", "Tw0'", "%X&y=1", quote(NASTY, safe=""), "rd%20Tw0"]


def sql(server, *statements: str, database: str = "postgres") -> None:
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=server.port, user=USER, password=PASSWORD, dbname=database
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def role(server, password: str, limit: int = -1) -> tuple[str, str]:
    """A new role with ``password`` owning a new database: (role, database)."""
    name = "r_" + uuid.uuid4().hex[:10]
    literal = password.replace("'", "''")
    sql(server, f"CREATE ROLE {name} LOGIN PASSWORD '{literal}' CONNECTION LIMIT {limit}",
        f"CREATE DATABASE {name} OWNER {name}")  # fmt: skip
    return name, name


def mlpsearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlpsearch", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_password_made_of_url_syntax_is_never_shown_or_stored(postgres, tmp_path):  # noqa: F811
    name, db = role(postgres, NASTY)
    url = f"postgresql+psycopg2://{name}:{quote(NASTY, safe='')}@127.0.0.1:{postgres.port}/{db}"
    in_query = (
        f"postgresql+psycopg2://127.0.0.1:{postgres.port}/{db}?user={name}"
        f"&password={quote(NASTY, safe='')}"
    )
    path = write_experiment(tmp_path / "e.toml", "nasty", n_trials=3, n_jobs=1, epochs=2)
    runs = [
        mlpsearch("run", str(path), "--storage", url, cwd=tmp_path),
        mlpsearch("report", "--storage", in_query, "--study", "nasty", cwd=tmp_path),
        mlpsearch("compare", "--storage", url, "--study", "nasty", "0", "1", cwd=tmp_path),
        mlpsearch("rerun", "--storage", url, "--study", "nasty", cwd=tmp_path),
        mlpsearch("worker", "--storage", in_query, "--study", "nasty", cwd=tmp_path),
        # unencoded: psycopg2 cannot even parse it; refused, still hidden
        mlpsearch(
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
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=server.port, user=USER, password=PASSWORD, dbname=database
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT string_agg(value_json, ' ') FROM ("
            "SELECT value_json FROM study_user_attributes UNION ALL "
            "SELECT value_json FROM study_system_attributes UNION ALL "
            "SELECT value_json FROM trial_user_attributes UNION ALL "
            "SELECT value_json FROM trial_system_attributes) a"
        )
        (text,) = cur.fetchone()
    conn.close()
    return text or ""


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_connection_limit_is_checked_before_anything_is_created(postgres, tmp_path, jobs):  # noqa: F811
    name, db = role(postgres, "limited-Pw1", limit=5)
    url = f"postgresql+psycopg2://{name}:limited-Pw1@127.0.0.1:{postgres.port}/{db}"
    path = write_experiment(tmp_path / "e.toml", "lim", n_trials=2, n_jobs=jobs, epochs=2)
    r = mlpsearch("run", str(path), "--storage", url, cwd=tmp_path)
    if jobs == 1:  # 2 per worker process and 3 for the parent: fits in 5
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.splitlines()
    assert "connection limit 5" in line and "needs up to" in line and "--jobs" in line
    assert "limited-Pw1" not in r.stdout + r.stderr
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=postgres.port, user=USER, password=PASSWORD, dbname=db
    )
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone()[0] == 0  # not even Optuna's tables
    conn.close()
    assert not (tmp_path / "results").exists()
