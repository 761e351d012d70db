"""Trial tables: one row per trial, built from the storage alone."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from mlpsearch.engine.files import write_atomic

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

    ``dead_fraction`` is the largest per-layer fraction of dead hidden units at the last epoch;
    ``dead_fraction_layers`` lists them all.
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        dead = a.get("dead_fraction") or []
        row = {
            "number": t.number,
            "state": t.state.name,
            "slot": a.get("slot"),
            "value": t.value,
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
    head = ["number", "state", "slot", "value"]
    rest = [c for c in frame.columns if c not in head and c not in params]
    return frame[head + params + rest].sort_values("number").reset_index(drop=True)


def write_trials_csv(study: optuna.Study, path: Path) -> pd.DataFrame:
    """Write :func:`trials_frame` to ``path`` atomically; returns the frame."""
    frame = trials_frame(study)
    write_atomic(path, lambda f: frame.to_csv(f, index=False, float_format="%.6g"))
    return frame
