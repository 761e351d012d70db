"""``summary.json``: what a study found, in stable keys for scripts (documented in the README).

Written by ``mlpsearch run`` and ``mlpsearch report`` (atomically), rebuilt from the storage
and, for the test error, from ``final.json``, which ``rerun --final`` writes::

    {
      "study": "digits_random",
      "counts": {"complete": 200, "pruned": 0, "failed": 0, "interrupted": 0,
                 "confirmations": 15},
      "best": {
        "trial": 132,                 # the search trial whose configuration is best
        "params": {...},              # its searched hyperparameters
        "val_error": 0.0232,          # mean over its seeds where confirmed, else its value
        "val_error_std": 0.0041,      # sd over the seeds (binomial standard error if n = 1)
        "n_seeds": 4,                 # search seed + fresh seeds
        "search_val_error": 0.0139,   # the search's single-seed value
        "optimism": 0.0093,           # val_error - search_val_error
        "train_error": 0.0,           # the search trial's, at its best epoch
        "test_error": 0.0390          # once rerun --final ran on this trial, else null
      }
    }

``best`` is null while no trial is complete. Errors are fractions (0.0232 = 2.32%).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from mlpsearch import confirm, outcomes
from mlpsearch import trials as stored
from mlpsearch.engine.files import write_atomic

__all__ = [
    "FINAL_FILE",
    "SUMMARY_FILE",
    "best_text",
    "binomial_se",
    "counts_text",
    "study_summary",
    "write_summary",
]

SUMMARY_FILE = "summary.json"
FINAL_FILE = "final.json"  # rerun --final: {"trial", "test_error", "train_error", "epochs"}


def binomial_se(p: float, n: int | None) -> float | None:
    """Standard error of an error rate ``p`` measured on ``n`` examples: sqrt(p(1-p)/n)."""
    if not n or p is None or not 0.0 <= p <= 1.0:
        return None
    return math.sqrt(p * (1.0 - p) / n)


def study_summary(
    study: optuna.Study,
    folder: Path | None = None,
    trials: Sequence[stored.TrialRecord] | None = None,
) -> dict[str, Any]:
    """What ``summary.json`` holds (``trials``: the study's records, if already read)."""
    trials = stored.records(study) if trials is None else trials
    searched = confirm.search_trials(trials)
    counts: dict[str, Any] = outcomes.counts(searched)
    counts["confirmations"] = sum(
        1 for t in trials if t.is_confirmation and t.state == TrialState.COMPLETE
    )
    found = confirm.best(trials)
    best = None
    if found is not None:
        t = next(t for t in trials if t.number == found.trial)
        std = found.std
        if std is None:
            std = binomial_se(found.search_value, t.val_rows)
        best = {
            "trial": found.trial,
            "params": found.params,
            "val_error": found.mean,
            "val_error_std": std,
            "n_seeds": found.n,
            "search_val_error": found.search_value,
            "optimism": found.optimism,
            "train_error": t.best_train_error,
            "test_error": _test_error(folder, found.trial),
        }
    return {"study": study.study_name, "counts": counts, "best": best}


def write_summary(
    study: optuna.Study, folder: Path, trials: Sequence[stored.TrialRecord] | None = None
) -> dict[str, Any]:
    """Write ``folder/summary.json`` (whole or not at all); returns what it wrote."""
    summary = study_summary(study, folder, trials)
    write_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return summary


def _test_error(folder: Path | None, trial: int) -> float | None:
    if folder is None:
        return None
    try:
        final = json.loads((folder / FINAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(final, dict) or final.get("trial") != trial:
        return None
    value = final.get("test_error")
    return float(value) if isinstance(value, int | float) else None


def counts_text(counts: dict[str, Any]) -> str:
    """``200 complete, 3 pruned, 0 failed, 1 interrupted; 15 confirmation trials``."""
    text = ", ".join(f"{counts.get(k, 0)} {k}" for k in outcomes.COUNTED)
    if counts.get("confirmations"):
        text += f"; {counts['confirmations']} confirmation trials"
    return text


def best_text(best: dict[str, Any]) -> str:
    """The best configuration in one line, with its uncertainty and the search's own value:
    ``trial 132: validation error 2.43% ± 0.52% (mean of 4 seeds; the search's seed gave
    1.39%, optimism +1.04 points)``."""
    std = best.get("val_error_std")
    spread = "" if std is None else f" ± {std:.2%}"
    if best["n_seeds"] > 1:
        how = (
            f"mean ± sd of {best['n_seeds']} seeds; the search's seed gave "
            f"{best['search_val_error']:.2%}, optimism {100 * best['optimism']:+.2f} points"
        )
    else:
        how = "one seed, not confirmed; ± is the binomial standard error"
    text = f"trial {best['trial']}: validation error {best['val_error']:.2%}{spread} ({how})"
    if best.get("train_error") is not None:
        text += f", train error {best['train_error']:.2%}"
    if best.get("test_error") is not None:
        text += f", test error {best['test_error']:.2%} (rerun --final)"
    return text
