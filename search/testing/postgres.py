"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a temporary folder.

``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<version>/bin``, from Debian's ``postgresql``
package) make and start a cluster listening on 127.0.0.1 on a free port; it is stopped and
deleted afterwards. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user (created by the package) through ``runuser``, in a folder it owns.
Connections over TCP need a password (scram-sha-256), so tests can see that it never leaks.

Used by the tests (``conftest.py``'s ``postgres`` and ``own_postgres`` fixtures hand a
:class:`Server` to them) and by the benchmarks that need a server; it lives in the package so
that both import it the same way, and no benchmark reaches into ``tests/``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

USER = "mlpsearch"
PASSWORD = "pg-secret-Xq7"  # tests look for this string in everything the program writes


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl, if any."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(p).parent / "pg_ctl").exists()
    ]
    if not found:
        which = shutil.which("initdb")
        return Path(which).parent if which and shutil.which("pg_ctl") else None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def skip_reason() -> str | None:
    if server_binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed; pip install psycopg2-binary"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


@dataclass
class Server:
    """A cluster in ``folder`` listening on 127.0.0.1:``port``; user ``USER``, ``password``."""

    port: int
    folder: Path
    password: str = PASSWORD

    def url(self, database: str, password: str | None = None) -> str:
        """The URL of ``database`` with the server's password (or ``password``) in it."""
        password = self.password if password is None else password
        return f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start (or restart) the server on its port; raises if it does not come up."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            _as_server_user(
                [str(server_binaries() / "pg_ctl"), "-D", str(self.folder / "data"),
                 "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start"]
            ),
            check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once, as a crash would (its data stays for :meth:`start`)."""
        subprocess.run(
            _as_server_user([str(server_binaries() / "pg_ctl"), "-D", str(self.folder / "data"),
                             "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=60,
        )  # fmt: skip

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.query(f"CREATE DATABASE {name}")
        return name

    def query(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run ``sql`` in ``database`` as ``USER`` (autocommit); the rows it returns."""
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname=database
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> Server:
    """initdb a cluster in a temporary folder and start it; raises if it does not come up."""
    bin_dir = server_binaries()
    assert bin_dir is not None
    folder = Path(tempfile.mkdtemp(prefix="mlpsearch-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
    os.chmod(folder, 0o700)
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, pg.pw_uid, pg.pw_gid)
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D", str(data),
                "-U", USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--no-sync",
            ]
        ),
        **run,
    )  # fmt: skip
    server = Server(_free_port(), folder)
    server.start()
    return server


def stop_server(server: Server) -> None:
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)
