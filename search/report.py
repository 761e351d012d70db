"""``mlpsearch report``: the trials table, the best trials, every plot, and one HTML page.

Everything is rebuilt from the storage alone, and nothing in it depends on the time or the
machine it is written on: running the report twice gives byte-identical files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from mlpsearch.engine.files import write_atomic
from mlpsearch.plots import PLOTS, write_plots
from mlpsearch.tables import write_trials_csv
from mlpsearch.trials import (
    TrialRecord,
    best,
    best_first,
    experiment_text,
    records,
    stored_experiment,
)

TOP = 10


@dataclass(frozen=True)
class Report:
    csv: Path
    plots: list[Path]
    html: Path
    top: pd.DataFrame


def write_report(
    study: optuna.Study, folder: Path, *, top: int = TOP, echo: Callable[[str], None] = print
) -> Report:
    """Write ``trials.csv``, ``plots/*.png`` and ``report.html`` into ``folder``; print the
    summary and the ``top`` best trials."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "trials.csv"
    write_trials_csv(study, csv)
    trials = records(study)
    table = top_trials(trials, top)
    facts = summary(study, trials)
    plots = write_plots(study, folder / "plots")
    page = folder / "report.html"
    write_atomic(page, render_html(study, facts, table, plots))

    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        echo(f"{key:<{width}}  {value}")
    if table.empty:
        echo("no complete trials yet")
    else:
        echo(f"\ntop {len(table)} trials (validation and train error at the best epoch):")
        echo(table.to_string(index=False))
    echo(f"\nwrote {csv}, {len(plots)} plots in {folder / 'plots'}, and {page}")
    return Report(csv, plots, page, table)


# --- the content -----------------------------------------------------------------------------


def summary(study: optuna.Study, trials: Sequence[TrialRecord]) -> list[tuple[str, str]]:
    """(label, value) lines describing the study: its setup, its trials, its best trial."""
    counts = {s: sum(r.state == s for r in trials) for s in TrialState}
    states = ", ".join(f"{n} {s.name.lower()}" for s, n in counts.items() if n)
    facts = [("study", study.study_name)]
    exp = stored_experiment(study, required=False)
    if exp is not None:
        s, d = exp.study, exp.data
        facts += [
            ("dataset", f"{d.dataset} (validation fraction {d.val_fraction})"),
            ("search", f"{s.sampler} sampler, {_pruner(s.pruner)}, seed {s.seed}"),
            (
                "training",
                f"up to {exp.train['epochs']} epochs, patience {exp.train['patience']}",
            ),
        ]
    facts.append(("trials", f"{len(trials)} ({states or 'none'})"))
    seconds = sum(r.seconds or 0.0 for r in trials)
    facts.append(("training time", f"{seconds:.1f} s summed over trials"))
    failed = [r for r in trials if r.state == TrialState.FAIL]
    if failed:
        reasons = [f"{r.number}: {r.reason or 'no reason stored'}" for r in failed]
        more = f"; and {len(reasons) - 5} more (see trials.csv)" if len(reasons) > 5 else ""
        facts.append(("failed trials", "; ".join(reasons[:5]) + more))
    top = best(trials)
    if top is not None:
        facts.append(
            (
                "best trial",
                f"{top.number}: validation error {top.value:.2%}, train error "
                f"{top.best_train_error:.2%} at epoch {top.best_epoch} of {top.epochs}; "
                f"{top.describe()}",
            )
        )
    return facts


def top_trials(trials: Sequence[TrialRecord], k: int = TOP) -> pd.DataFrame:
    """The ``k`` best complete trials as a table of readable strings, best first."""
    rows = []
    for r in best_first(trials)[:k]:
        row = {
            "trial": r.number,
            "val error": f"{r.value:.2%}",
            "train error": f"{r.best_train_error:.2%}",
            "gap": f"{r.value - r.best_train_error:+.2%}",
            "epoch": f"{r.best_epoch}/{r.epochs}",
            "seconds": f"{r.seconds or 0.0:.1f}",
            "activation": r.activation,
            "hidden units": "-".join(str(u) for u in r.units),
            "learning rate": f"{r.setting('learning_rate'):.3g}",
        }
        shown = {"activation", "hidden_layers", "learning_rate"}
        for name, value in sorted(r.params.items()):
            if name not in shown and not name.startswith("units"):
                row[name.replace("_", " ")] = f"{value:.3g}" if isinstance(value, float) else value
        rows.append(row)
    return pd.DataFrame(rows)


def _pruner(name: str | None) -> str:
    return "no pruning" if name in (None, "none") else f"{name} pruner"


# --- the page --------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; text-align: left; border-bottom: 1px solid #e4e4e4; }
th { background: #f2f2f2; }
table.summary th { background: none; font-weight: 600; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; margin-top: 0.3em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 1em; }
"""


def render_html(
    study: optuna.Study,
    facts: list[tuple[str, str]],
    table: pd.DataFrame,
    plots: list[Path],
) -> str:
    """One self-contained page: summary, top-trials table, every plot (embedded), experiment."""
    e = html.escape
    name = study.study_name
    rows = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    if table.empty:
        top = "<p>No complete trials yet.</p>"
    else:
        top = table.to_html(index=False, border=0, escape=True, classes="trials")
    figures = []
    for path in plots:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = PLOTS.get(path.stem, path.stem)
        figures.append(
            f'<figure id="{e(path.stem)}"><img src="data:image/png;base64,{data}" '
            f'alt="{e(caption)}"><figcaption>{e(path.name)}: {e(caption)}</figcaption></figure>'
        )
    nav = " ".join(f'<a href="#{e(p.stem)}">{e(p.stem)}</a>' for p in plots)
    experiment = experiment_text(study)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(name)}: mlpsearch report</title>
<style>{CSS}</style>
</head>
<body>
<h1>Study {e(name)}</h1>
<table class="summary">
{rows}
</table>
<h2>Best trials</h2>
<p>Validation and train error at each trial's best epoch; gap = validation - train.
Every trial is in <code>trials.csv</code>.</p>
{top}
<h2>Plots</h2>
<nav>{nav}</nav>
{chr(10).join(figures)}
<h2>Experiment</h2>
<pre>{e(experiment)}</pre>
</body>
</html>
"""
