"""Storage scaling: is a study on PostgreSQL as fast as on the journal file, start to finish?

One run times the same study of 1,500 one-epoch digits trials (the default experiment's space,
cut to one epoch) with 2 workers through the real CLI (``python -m mlpsearch run``), first on
a journal file, then on a throwaway PostgreSQL server started here as the tests start theirs
(mlpsearch.testing.postgres: Debian's ``postgresql`` binaries, initdb in a temporary folder,
a free port on 127.0.0.1), stopped and deleted at the end whatever happens. Each run is bounded by
``--timeout`` seconds; a run cut short is reported with what it finished.

Printed for each storage: finished trials (complete, or failed by diverging) per second over
the whole command (start-up and the end-of-run
table included), and over the first and the last 300 trials to finish (from the trials' own
completion times). Targets:

    PostgreSQL overall >= 0.5 x the journal's overall
    PostgreSQL last-300 rate >= 0.7 x its first-300 rate (the rate does not sink as the study
    grows)

    python experiments/benchmarks/storage_scaling.py [--trials 1500] [--jobs 2] [--window 300]
        [--storage both|journal|postgres] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]
NAME = "storage_scaling"

# The default experiment (experiments/digits_random.toml) with one epoch per trial.
EXPERIMENT = """\
[study]
name = "{name}"
sampler = "random"
n_trials = {trials}
n_jobs = {jobs}
seed = 0
pruner = "none"

[data]
dataset = "digits"
val_fraction = 0.2
scale = "unit"

[train]
epochs = 1
optimizer = "momentum"
schedule = "cosine"

[space]
hidden_layers = {{ low = 1, high = 3 }}
units = {{ low = 32, high = 512, log = true }}
activation = ["relu", "tanh", "sigmoid", "gelu"]
learning_rate = {{ low = 0.003, high = 0.3, log = true }}
batch_size = [16, 32, 64]
init_scale = {{ low = 0.5, high = 2.0 }}
weight_decay = [0.0, 0.0001, 0.001]
"""


def run_cli(url: str, folder: Path, trials: int, jobs: int, timeout: float, window: int) -> dict:
    """``mlpsearch run`` of the experiment on ``url``; the figures of its study."""
    path = folder / "experiment.toml"
    path.write_text(EXPERIMENT.format(name=NAME, trials=trials, jobs=jobs))
    cmd = [sys.executable, "-m", "mlpsearch", "run", str(path), "--storage", url,
           "--out", str(folder / "results")]  # fmt: skip
    started = time.perf_counter()
    # its own process group, so that a timeout ends the workers too
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    error = ""
    try:
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            error = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        error = f"cut short after {timeout:.0f} s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - started
    return figures(url, wall, error, window)


def figures(url: str, wall: float, error: str, window: int = 300) -> dict:
    from mlpsearch.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=NAME, storage=open_storage(url, create=False))
    trials = study.get_trials(deepcopy=False)
    done = sorted(  # a trial that diverged (FAIL) or was pruned is a trial run too
        t.datetime_complete.timestamp()
        for t in trials
        if t.state.is_finished() and t.datetime_complete is not None
    )
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    first = last = float("nan")
    if len(done) >= window and starts:
        # the first window: from the first trial's start to the window-th completion
        first = window / max(done[window - 1] - min(starts), 1e-9)
        # the last window: between the completions just before it and its last
        before = done[-window - 1] if len(done) > window else min(starts)
        last = window / max(done[-1] - before, 1e-9)
    return {
        "storage": url.split(":")[0].split("+")[0],
        "finished": len(done),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "wall": wall,
        "overall": len(done) / wall,
        "first": first,
        "last": last,
        "error": error,
    }


def postgres_url(stack: list) -> str | None:
    """A fresh database on a throwaway server (stopped by the caller through ``stack``)."""
    from mlpsearch.testing import postgres as pg

    reason = pg.skip_reason()
    if reason:
        print(f"postgres: skipped: {reason}")
        return None
    server = pg.start_server()
    stack.append(lambda: pg.stop_server(server))
    return server.url(server.create_database())


def print_figures(rows: list[dict], window: int) -> None:
    print(
        f"{'storage':<10} {'finished':>8} {'failed':>6} {'wall s':>7} {'trials/s':>8} "
        f"{f'first {window}':>10} {f'last {window}':>10}"
    )
    for r in rows:
        print(
            f"{r['storage']:<10} {r['finished']:>8} {r['failed']:>6} {r['wall']:>7.1f} "
            f"{r['overall']:>8.1f} {r['first']:>10.1f} {r['last']:>10.1f}"
        )
        if r["error"]:
            print(f"  {r['storage']}: {r['error']}")
    by = {r["storage"]: r for r in rows}
    if "journal" in by and "postgresql" in by:
        ratio = by["postgresql"]["overall"] / by["journal"]["overall"]
        print(f"PostgreSQL / journal throughput: {ratio:.2f} (target >= 0.5)")
    if "postgresql" in by:
        r = by["postgresql"]
        print(
            f"PostgreSQL last-{window} / first-{window} rate: {r['last'] / r['first']:.2f} "
            "(target >= 0.7)"
        )
    if "journal" in by:
        r = by["journal"]
        print(f"journal last-{window} / first-{window} rate: {r['last'] / r['first']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--window", type=int, default=300, help="trials in the first/last rate")
    parser.add_argument("--storage", default="both", choices=("both", "journal", "postgres"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per storage")
    args = parser.parse_args()
    # a SIGTERM stops like Ctrl-C, so that the server is stopped below
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rows = []
    cleanup: list = []
    print(f"{args.trials} one-epoch digits trials, {args.jobs} workers, `mlpsearch run`")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kinds = ["journal", "postgres"] if args.storage == "both" else [args.storage]
            for kind in kinds:
                folder = Path(tmp) / kind
                folder.mkdir()
                url = (
                    f"journal:{folder / 'journal.log'}"
                    if kind == "journal"
                    else postgres_url(cleanup)
                )
                if url is None:
                    continue
                rows.append(
                    run_cli(url, folder, args.trials, args.jobs, args.timeout, args.window)
                )
    finally:
        for stop in reversed(cleanup):
            stop()
    print_figures(rows, args.window)
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
