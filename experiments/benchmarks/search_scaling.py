"""How well the runner scales: the same digits random search with 1 and with 2 workers.

Runs the default experiment (experiments/digits_random.toml) cut to 24 trials, once with
``--jobs 1`` and once with ``--jobs 2``, each as a fresh study in a temporary folder, and prints
trials per minute and the runner's overhead:

    overhead = (wall time x workers - sum of trial training time) / (wall time x workers)

Targets: jobs-2 / jobs-1 throughput >= 1.8, overhead <= 10%. Each setting runs ``--repeat``
times, alternating, and the run of median wall time is shown: these machines are noisy.

    python experiments/benchmarks/search_scaling.py [--trials 24] [--repeat 3] [--experiment NAME]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

from mlpsearch.cli import find_experiment
from mlpsearch.config import load_experiment
from mlpsearch.runner import run_study
from mlpsearch.trials import records


def measure(exp, jobs: int, folder: Path, run: int) -> dict[str, float]:
    exp = exp.replace_study(n_jobs=jobs, name=f"scaling_jobs{jobs}_{run}")
    started = time.perf_counter()
    result = run_study(exp, folder, echo=lambda line: None)
    wall = time.perf_counter() - started
    trials = records(result.study, (TrialState.COMPLETE, TrialState.PRUNED))
    training = sum(r.seconds for r in trials)
    return {
        "jobs": jobs,
        "trials": len(trials),
        "wall": wall,
        "per_minute": 60 * len(trials) / wall,
        "training": training,
        "overhead": (wall * jobs - training) / (wall * jobs),
        "best": result.study.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--experiment", default="digits_random")
    args = parser.parse_args()
    exp = load_experiment(find_experiment(args.experiment)).replace_study(n_trials=args.trials)
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            for jobs in (1, 2):
                runs[jobs].append(measure(exp, jobs, Path(tmp), run))
    rows = [sorted(r, key=lambda m: m["wall"])[len(r) // 2] for r in runs.values()]
    print(f"{args.experiment}, {args.trials} trials, seed {exp.study.seed}")
    print(f"each setting run {args.repeat} times; the run of median wall time:")
    print(
        f"{'jobs':>4} {'wall s':>8} {'trials/min':>11} {'train s':>8} {'overhead':>9} {'best':>7}"
    )
    for r in rows:
        print(
            f"{r['jobs']:>4} {r['wall']:8.1f} {r['per_minute']:11.1f} {r['training']:8.1f} "
            f"{r['overhead']:9.1%} {r['best']:7.2%}"
        )
    ratio = rows[1]["per_minute"] / rows[0]["per_minute"]
    print(f"throughput jobs-2 / jobs-1: {ratio:.2f} (target >= 1.8)")
    print(f"overhead at jobs 2: {rows[1]['overhead']:.1%} (target <= 10%)")


if __name__ == "__main__":
    main()
