"""``mlpsearch compare``: a few trials' learning curves side by side, and how they differ."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from mlpsearch.plots import _style, curves_figure, save
from mlpsearch.trials import TrialRecord, pick


@dataclass(frozen=True)
class Comparison:
    figure: Path
    differ: pd.DataFrame  # parameter -> one column per trial, only rows that differ
    same: dict[str, Any]  # parameters equal in every trial
    results: pd.DataFrame  # errors, epochs, time: one column per trial


def compare(
    study: optuna.Study,
    numbers: Sequence[int],
    folder: Path,
    echo: Callable[[str], None] = print,
) -> Comparison:
    """Draw ``plots/compare_<n1>_<n2>_....png`` and print the parameters that differ."""
    trials = pick_trials(study, numbers)
    label = ", ".join(str(t.number) for t in trials)
    path = folder / "plots" / figure_name([t.number for t in trials])
    path.parent.mkdir(parents=True, exist_ok=True)
    with _style():
        save(
            curves_figure(
                trials,
                f"{study.study_name}: trials {label} side by side",
                ncols=min(4, len(trials)),
            ),
            path,
        )

    columns = [f"trial {t.number}" for t in trials]
    settings = [settings_of(t) for t in trials]
    keys = [k for k in settings[0] if all(k in s for s in settings)]
    keys += sorted({k for s in settings for k in s} - set(keys))
    differ = {
        k: [_text(s[k]) if k in s else "-" for s in settings]
        for k in keys
        if len({_key(s.get(k)) for s in settings}) > 1
    }
    same = {k: settings[0][k] for k in keys if k not in differ}
    differ_frame = pd.DataFrame(differ, index=columns).T
    results = pd.DataFrame({c: results_of(t) for c, t in zip(columns, trials, strict=True)})

    if len(trials) > 1:
        echo(f"parameters that differ between trials {label}:")
        echo(differ_frame.to_string() if not differ_frame.empty else "  (none)")
        echo("same in all: " + ", ".join(f"{k} {_text(v)}" for k, v in same.items()))
    else:
        echo(f"trial {label}: " + ", ".join(f"{k} {_text(v)}" for k, v in same.items()))
    echo("\nresults:")
    echo(results.to_string())
    echo(f"\nlearning curves: {path}")
    return Comparison(path, differ_frame, same, results)


def figure_name(numbers: Sequence[int]) -> str:
    """``compare_3_7_12.png``; for many trials ``compare_100_trials_0-99_<hash>.png`` (a file
    name is at most 255 bytes)."""
    joined = "_".join(str(n) for n in numbers)
    if len(joined) <= 80:
        return f"compare_{joined}.png"
    digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
    return f"compare_{len(numbers)}_trials_{min(numbers)}-{max(numbers)}_{digest}.png"


def pick_trials(study: optuna.Study, numbers: Sequence[int]) -> list[TrialRecord]:
    """The trials numbered ``numbers`` (duplicates dropped), each with a learning curve."""
    return [pick(study, n, complete=False) for n in dict.fromkeys(numbers)]


def settings_of(r: TrialRecord) -> dict[str, Any]:
    """Everything that defines how a trial trained, flat and in a readable order."""
    config = r.config or {"model": {}, "train": {}}
    out: dict[str, Any] = {
        "hidden layers": len(r.units),
        "units": "-".join(str(u) for u in r.units),
    }
    for k, v in config["model"].items():
        if k not in ("layer_sizes", "seed", "dtype"):
            out[k] = v
    for k, v in config["train"].items():
        if k != "seed":
            out[k] = v
    out["seed"] = r.seed
    return out


def results_of(r: TrialRecord) -> dict[str, str]:
    def pct(v: float | None) -> str:
        return "" if v is None else f"{v:.2%}"

    def text(v: int | None) -> str:
        return "" if v is None else str(v)

    return {
        "state": r.state.name.lower(),
        "best val error": pct(r.best_val_error),
        "train error then": pct(r.best_train_error),
        "best epoch": text(r.best_epoch),
        "epochs run": text(r.epochs),
        "final val error": pct(r.val_error),
        "seconds": f"{r.seconds or 0.0:.1f}",
    }


def _key(v: Any) -> str:
    return repr(v)


def _text(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
