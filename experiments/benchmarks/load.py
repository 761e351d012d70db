"""Load: many workers and many very short trials on one study. Is any trial lost or run twice?

Two ``mlpsearch run`` parents (two "machines"), started at the same moment on the same storage,
each with half the worker processes, run one study of very short trials (one epoch of a tiny
network on digits): the planning lock, the claiming of WAITING trials and the storage itself
are what is measured. Then every slot must have exactly one finished trial:

    lost        slots 0..n-1 without a COMPLETE trial
    duplicated  trials beyond n, or slots with more than one COMPLETE trial

    python experiments/benchmarks/load.py [--workers 8] [--trials 200]
        [--storage journal|postgres|both|URL]

``postgres`` starts a throwaway server as the tests do (mlpsearch.testing.postgres: Debian's
``postgresql`` binaries); a ``postgresql+psycopg2://...`` URL uses yours (an empty database).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from mlpsearch.config import dumps_toml
from mlpsearch.storage import mask, open_storage

ROOT = Path(__file__).resolve().parents[2]
NAME = "load"


def write_experiment(path: Path, trials: int, jobs: int) -> Path:
    sections = {
        "study": {
            "name": NAME, "n_trials": trials, "n_jobs": jobs, "seed": 3, "confirm": {"top": 0}
        },
        "data": {"dataset": "digits"},
        "train": {"epochs": 1, "batch_size": 256},
        "space": {
            "units": {"low": 4, "high": 8},
            "activation": ["relu", "tanh"],
            "learning_rate": {"low": 0.01, "high": 0.2, "log": True},
        },
    }
    path.write_text(dumps_toml(sections))
    return path


def run_load(url: str, folder: Path, workers: int, trials: int, parents: int = 2) -> dict:
    """Run the load on the storage ``url``; the figures (see the module docstring)."""
    path = write_experiment(folder / "load.toml", trials, max(1, workers // parents))
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
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(parents)
    ]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
    wall = time.perf_counter() - started
    figures = tally(url, trials)
    return {
        "storage": mask(url).split(":")[0],
        "workers": workers,
        "trials": trials,
        "wall": wall,
        "per_second": figures["complete"] / wall,
        **figures,
        "errors": errors,
    }


def tally(url: str, trials: int) -> dict:
    """Complete, failed, lost and duplicated trials of the study, and the processes that ran
    them (see the module docstring)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=NAME, storage=open_storage(url))
    all_trials = study.get_trials()
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    per_slot = Counter(t.user_attrs.get("slot") for t in complete)
    numbers = Counter(t.number for t in all_trials)
    return {
        "complete": len(complete),
        "failed": sum(t.state == TrialState.FAIL for t in all_trials),
        "lost": sum(1 for slot in range(trials) if per_slot[slot] == 0),
        "duplicated": max(0, len(all_trials) - trials)
        + sum(n - 1 for n in per_slot.values() if n > 1)
        + sum(n - 1 for n in numbers.values() if n > 1),
        "processes": len({t.user_attrs.get("pid") for t in complete}),
    }


def print_figures(rows: list[dict]) -> None:
    print(
        f"{'storage':<20} {'workers':>7} {'trials':>6} {'wall s':>7} {'trials/s':>8} "
        f"{'complete':>8} {'failed':>6} {'lost':>4} {'dup':>4} {'procs':>5}"
    )
    for r in rows:
        print(
            f"{r['storage']:<20} {r['workers']:>7} {r['trials']:>6} {r['wall']:>7.1f} "
            f"{r['per_second']:>8.1f} {r['complete']:>8} {r['failed']:>6} {r['lost']:>4} "
            f"{r['duplicated']:>4} {r['processes']:>5}"
        )
        for e in r["errors"]:
            print(f"  error: {e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--storage", default="both", help="journal, postgres, both or a URL")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ["journal", "postgres"] if args.storage == "both" else [args.storage]
        for kind in kinds:
            folder = Path(tmp) / kind.split(":")[0]
            folder.mkdir()
            if kind == "journal":
                rows.append(run_load(f"journal:{folder / 'journal.log'}", folder,
                                     args.workers, args.trials))  # fmt: skip
            elif kind == "postgres":
                from mlpsearch.testing import postgres as pg

                reason = pg.skip_reason()
                if reason:
                    print(f"postgres: skipped: {reason}")
                    continue
                server = pg.start_server()
                try:
                    url = server.url(server.create_database())
                    rows.append(run_load(url, folder, args.workers, args.trials))
                finally:
                    pg.stop_server(server)
            else:
                rows.append(run_load(kind, folder, args.workers, args.trials))
    print_figures(rows)
    bad = [r for r in rows if r["lost"] or r["duplicated"] or r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
