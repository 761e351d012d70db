"""A fleet, simulated: 32 worker processes on one PostgreSQL, 10,000 short trials.

Starts a throwaway PostgreSQL (mlpsearch.testing.postgres: Debian's binaries, initdb in a
temporary folder, a free port on 127.0.0.1; stopped and deleted at the end whatever happens),
then starts ``--parents`` ``mlpsearch run`` commands at the same moment (the "machines"), each
with ``--workers / --parents`` worker processes, on one study of very short trials (one epoch
of a tiny network on digits, as experiments/benchmarks/load.py). While they run, it samples
every half second the connections open to the database (``pg_stat_activity``) and the CPU time
of the server's processes (from /proc: the postmaster, its live children, and the children it
has reaped). Then it checks every slot (load.py's count: 0 lost, 0 duplicated) and times
``mlpsearch report`` of the finished study and the ``trials.csv`` it writes.

    python experiments/benchmarks/fleet.py [--workers 32] [--parents 2] [--trials 10000]
        [--timeout 3600]

Targets: 0 lost, 0 duplicated; peak connections well under max_connections; report and
trials.csv of a 10,000-trial study in at most 30 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mlpsearch.testing import postgres as pg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from load import NAME, tally, write_experiment  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(folder: Path) -> float:
    """CPU seconds used so far by a PostgreSQL server: the postmaster (with the children it
    has reaped) and its live children."""
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile: the postmaster's cutime holds it now
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


class Monitor(threading.Thread):
    """Samples connections and server CPU every ``period`` seconds until stopped."""

    def __init__(self, server: pg.Server, database: str, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psycopg2

        self.conn = psycopg2.connect(
            host="127.0.0.1", port=server.port, user=pg.USER, password=pg.PASSWORD,
            dbname=database,
        )  # fmt: skip
        self.conn.autocommit = True
        self.server, self.period = server, period
        self.stopped = threading.Event()
        self.peak = 0
        self.samples: list[int] = []
        with self.conn.cursor() as cur:
            cur.execute("SHOW max_connections")
            self.max_connections = int(cur.fetchone()[0])
        self.cpu_start = server_cpu(server.folder)

    def run(self) -> None:
        with self.conn.cursor() as cur:
            while not self.stopped.wait(self.period):
                # every connection to the server but this one (all are ours: a fresh server)
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                            "'client backend' AND pid <> pg_backend_pid()")  # fmt: skip
                n = cur.fetchone()[0]
                self.samples.append(n)
                self.peak = max(self.peak, n)

    def stop(self) -> float:
        """Stop sampling; the server's CPU seconds since the start."""
        self.stopped.set()
        self.join()
        self.conn.close()
        return server_cpu(self.server.folder) - self.cpu_start


def run_fleet(server: pg.Server, folder: Path, args: argparse.Namespace) -> dict:
    database = server.create_database()
    url = server.url(database)
    jobs = args.workers // args.parents
    path = write_experiment(folder / "fleet.toml", args.trials, jobs)
    monitor = Monitor(server, database)
    monitor.start()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlpsearch",
                "run",
                str(path),
                "--storage",
                url,
                "--out",
                str(folder / f"machine{i}"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for i in range(args.parents)
    ]
    errors = []
    deadline = started + args.timeout
    try:
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.perf_counter()))
            if p.returncode != 0:
                errors.append((err.strip().splitlines() or [f"exit {p.returncode}"])[-1])
    except subprocess.TimeoutExpired:
        errors.append(f"cut short after {args.timeout:.0f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    wall = time.perf_counter() - started
    db_cpu = monitor.stop()
    figures = tally(url, args.trials)
    report = time_report(url, folder / "report")
    return {
        **figures,
        "wall": wall,
        "per_second": figures["complete"] / wall,
        "db_cpu": db_cpu,
        "peak_connections": monitor.peak,
        "max_connections": monitor.max_connections,
        "errors": errors,
        **report,
    }


def time_report(url: str, out: Path) -> dict:
    """Wall time of ``mlpsearch report`` of the study, and of writing its trials.csv alone."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mlpsearch", "report", "--storage", url, "--study", NAME,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = time.perf_counter() - started
    code = (
        "import sys, time; from pathlib import Path; import optuna\n"
        "from mlpsearch.storage import open_storage\n"
        "from mlpsearch.runner import write_table\n"
        "optuna.logging.set_verbosity(optuna.logging.WARNING)\n"
        "t = time.perf_counter()\n"
        "study = optuna.load_study(study_name=sys.argv[2], storage=open_storage(sys.argv[1]))\n"
        "write_table(study, Path(sys.argv[3]))\n"
        "print(time.perf_counter() - t)\n"
    )
    table = subprocess.run(
        [sys.executable, "-c", code, url, NAME, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rows = len((out / "trials.csv").read_text().splitlines()) - 1 if table.returncode == 0 else 0
    return {
        "report_seconds": report,
        "report_error": "" if proc.returncode == 0 else proc.stderr.strip()[-300:],
        "table_seconds": float(table.stdout.strip() or "nan"),
        "table_error": "" if table.returncode == 0 else table.stderr.strip()[-300:],
        "table_rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--parents", type=int, default=2)
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    reason = pg.skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # so the server is stopped
    server = pg.start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_fleet(server, Path(tmp), args)
    finally:
        pg.stop_server(server)
    print(
        f"{args.parents} x `mlpsearch run --jobs {args.workers // args.parents}` on one "
        f"PostgreSQL, {args.trials} trials"
    )
    print(
        f"complete {r['complete']}  failed {r['failed']}  lost {r['lost']}  "
        f"duplicated {r['duplicated']}  worker processes {r['processes']}"
    )
    print(f"wall {r['wall']:.1f} s  throughput {r['per_second']:.1f} trials/s")
    print(
        f"database CPU {r['db_cpu']:.1f} s ({r['db_cpu'] / r['wall']:.0%} of one core over "
        f"the run)"
    )
    print(f"peak connections {r['peak_connections']} of max_connections {r['max_connections']}")
    print(
        f"report {r['report_seconds']:.1f} s; trials.csv alone {r['table_seconds']:.1f} s "
        f"({r['table_rows']} rows) (target <= 30 s each)"
    )
    for e in r["errors"] + [r["report_error"], r["table_error"]]:
        if e:
            print(f"  error: {e}")
    bad = r["lost"] or r["duplicated"] or r["errors"] or r["report_error"] or r["table_error"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
