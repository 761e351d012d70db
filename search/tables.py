"""Trial tables: one row per trial, built from the storage alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pandas as pd

from mlpsearch import confirm, outcomes
from mlpsearch.engine.files import write_atomic
from mlpsearch.summary import binomial_se
from mlpsearch.trials import TrialRecord, records

RESULT_COLUMNS = [
    "train_error",
    "val_error",
    "best_train_error",
    "best_val_error",
    "best_epoch",
    "epochs",
    "seconds",
]


def trials_frame(study: optuna.Study, trials: Sequence[TrialRecord] | None = None) -> pd.DataFrame:
    """One row per trial: number, state, parameters, errors, epochs, dead units, seed, reason.

    ``outcome`` names how it ended (``interrupted (re-run as trial N)``, see
    :mod:`mlpsearch.outcomes`); ``value_se`` is the binomial standard error of its validation
    error; ``confirms`` is the search trial a confirmation trial re-trains on a fresh seed; a
    confirmed search trial has ``seeds_mean``, ``seeds_std`` and ``n_seeds`` over its seeds.

    ``dead_fraction`` is the largest per-layer fraction of dead hidden units at the last epoch;
    ``dead_fraction_layers`` lists them all. ``trials``: the study's records, if already read.
    """
    rows = []
    trials = records(study) if trials is None else trials
    retries = outcomes.retried_as(trials)
    found = confirm.estimates(trials)
    for r in trials:
        dead = r.dead_fraction
        seeds = found.get(r.number)
        confirmed = seeds is not None and seeds.confirmed
        row = {
            "number": r.number,
            "state": r.state.name,
            "outcome": outcomes.label(r, retries),
            "slot": r.slot,
            "value": r.value,
            "value_se": binomial_se(r.value, r.val_rows),
            "confirms": r.confirms,
            "seeds_mean": seeds.mean if confirmed else None,
            "seeds_std": seeds.std if confirmed else None,
            "n_seeds": seeds.n if confirmed else None,
            **{f"param_{k}": v for k, v in sorted(r.params.items())},
            **{k: getattr(r, k) for k in RESULT_COLUMNS},
            "dead_fraction": max(dead) if dead else None,
            "dead_fraction_layers": " ".join(f"{d:.3f}" for d in dead),
            "seed": r.seed,
            "retry_of": r.retry_of,
            "reason": r.reason,
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    params = sorted(c for c in frame.columns if c.startswith("param_"))
    head = ["number", "state", "outcome", "slot", "value", "value_se"]
    rest = [c for c in frame.columns if c not in head and c not in params]
    return frame[head + params + rest].sort_values("number").reset_index(drop=True)


def write_trials_csv(
    study: optuna.Study, path: Path, trials: Sequence[TrialRecord] | None = None
) -> pd.DataFrame:
    """Write :func:`trials_frame` to ``path`` atomically; returns the frame."""
    frame = trials_frame(study, trials)
    write_atomic(path, lambda f: frame.to_csv(f, index=False, float_format="%.6g"))
    return frame
