"""Trial tables: one row per trial, built from the storage alone."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from mlpsearch import confirm, outcomes
from mlpsearch.summary import binomial_se

RESULT_COLUMNS = [
    "train_error",
    "val_error",
    "best_train_error",
    "best_val_error",
    "best_epoch",
    "epochs",
    "seconds",
]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, parameters, errors, epochs, dead units, seed, reason.

    ``outcome`` names how it ended (``interrupted (re-run as trial N)``, see
    :mod:`mlpsearch.outcomes`); ``value_se`` is the binomial standard error of its validation
    error; ``confirms`` is the search trial a confirmation trial re-trains on a fresh seed; a
    confirmed search trial has ``seeds_mean``, ``seeds_std`` and ``n_seeds`` over its seeds.

    ``dead_fraction`` is the largest per-layer fraction of dead hidden units at the last epoch;
    ``dead_fraction_layers`` lists them all.
    """
    rows = []
    trials = study.get_trials(deepcopy=False)
    retries = outcomes.retried_as(trials)
    found = confirm.estimates(trials)
    for t in trials:
        a = t.user_attrs
        dead = a.get("dead_fraction") or []
        seeds = found.get(t.number)
        confirmed = seeds is not None and seeds.confirmed
        row = {
            "number": t.number,
            "state": t.state.name,
            "outcome": outcomes.label(t, retries),
            "slot": a.get("slot"),
            "value": t.value,
            "value_se": binomial_se(t.value, a.get("val_rows")),
            "confirms": a.get(confirm.CONFIRM_OF),
            "seeds_mean": seeds.mean if confirmed else None,
            "seeds_std": seeds.std if confirmed else None,
            "n_seeds": seeds.n if confirmed else None,
            **{f"param_{k}": v for k, v in sorted(t.params.items())},
            **{k: a.get(k) for k in RESULT_COLUMNS},
            "dead_fraction": max(dead) if dead else None,
            "dead_fraction_layers": " ".join(f"{d:.3f}" for d in dead),
            "seed": a.get("seed"),
            "retry_of": t.system_attrs.get("failed_trial"),
            "reason": a.get("fail_reason") or a.get("prune_reason") or "",
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    params = sorted(c for c in frame.columns if c.startswith("param_"))
    head = ["number", "state", "outcome", "slot", "value", "value_se"]
    rest = [c for c in frame.columns if c not in head and c not in params]
    return frame[head + params + rest].sort_values("number").reset_index(drop=True)


def write_trials_csv(study: optuna.Study, path: Path) -> pd.DataFrame:
    """Write :func:`trials_frame` to ``path`` atomically; returns the frame."""
    frame = trials_frame(study)
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return frame
