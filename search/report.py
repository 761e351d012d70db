"""``mlpsearch report``: the trials table, the best trials, every plot, and one HTML page.

Everything is rebuilt from the storage alone, and nothing in it depends on the time or the
machine it is written on: running the report twice gives byte-identical files.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd

from mlpsearch import confirm, outcomes
from mlpsearch.config import Experiment, Fixed
from mlpsearch.engine.files import write_atomic
from mlpsearch.plots import PLOTS, write_plots
from mlpsearch.summary import (
    SUMMARY_FILE,
    best_text,
    binomial_se,
    counts_text,
    study_summary,
    write_summary,
)
from mlpsearch.tables import write_trials_csv
from mlpsearch.trials import (
    TrialRecord,
    best,
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
    summary and the ``top`` best trials.

    Everything is first written into a staging folder beside them, then renamed into place:
    a failure (a full disk) leaves the earlier report as it was, with no file of the new one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with staging(folder) as stage:
        trials = records(study)  # read once: a study may hold many thousands
        write_trials_csv(study, stage / "trials.csv", trials)
        table = top_trials(trials, top)
        facts = summary(study, trials, folder)
        staged = write_plots(study, stage / "plots", trials)
        write_atomic(stage / "report.html", render_html(study, facts, table, staged, trials))
        (folder / "plots").mkdir(exist_ok=True)
        plots = [folder / "plots" / p.name for p in staged]
        for src, dst in zip(staged, plots, strict=True):
            os.replace(src, dst)
        csv, page = folder / "trials.csv", folder / "report.html"
        os.replace(stage / "trials.csv", csv)
        os.replace(stage / "report.html", page)
        write_summary(study, folder, trials)

    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        echo(f"{key:<{width}}  {value}")
    if table.empty:
        echo("no complete trials yet")
    else:
        echo(
            f"\ntop {len(table)} trials (validation ± its noise, and train error, at the best "
            "epoch; confirmed configurations first, as mean ± sd over n seeds; 'within noise': "
            "less than 2 standard errors (SE) from the best):"
        )
        echo(table.to_string(index=False))
    echo(
        f"\nwrote {csv}, {len(plots)} plots in {folder / 'plots'}, {page} and "
        f"{folder / SUMMARY_FILE}"
    )
    return Report(csv, plots, page, table)


@contextmanager
def staging(folder: Path) -> Iterator[Path]:
    """A fresh hidden folder inside ``folder`` for files written before they are renamed into
    place (a rename needs no free space); removed afterwards, whatever happened."""
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- the content -----------------------------------------------------------------------------


def fixed_text(exp: Experiment) -> str:
    """The hyperparameters the study held fixed: ``"activation gelu, batch_size 64, ..."``."""
    per_layer = any(name.startswith("units_") for name in exp.space)
    return ", ".join(
        f"{name} {spec.value}"
        for name, spec in exp.space.items()
        if isinstance(spec, Fixed) and not (name == "units" and per_layer)
    )


def summary(
    study: optuna.Study, trials: Sequence[TrialRecord], folder: Path | None = None
) -> list[tuple[str, str]]:
    """(label, value) lines describing the study: its setup, its trials, its best trial."""
    digest = study_summary(study, folder, trials)
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
        fixed = fixed_text(exp)
        if fixed:
            facts.append(("fixed", fixed))
    facts.append(("trials", f"{len(trials)} ({counts_text(digest['counts'])})"))
    seconds = sum(r.seconds or 0.0 for r in trials)
    facts.append(("training time", f"{seconds:.1f} s summed over trials"))
    retries = outcomes.retried_as(trials)
    interrupted = [r for r in trials if outcomes.outcome(r) == "interrupted"]
    if interrupted:
        labels = [f"{r.number}: {outcomes.label(r, retries)}" for r in interrupted]
        facts.append(("interrupted trials", "; ".join(labels)))
    failed = [r for r in trials if outcomes.outcome(r) == "failed"]
    if failed:
        reasons = [f"{r.number}: {r.reason or 'no reason stored'}" for r in failed]
        more = f"; and {len(reasons) - 5} more (see trials.csv)" if len(reasons) > 5 else ""
        facts.append(("failed trials", "; ".join(reasons[:5]) + more))
    top = best(trials)
    if top is not None and digest["best"] is not None:
        facts.append(
            (
                "best",
                f"{best_text(digest['best'])}; best epoch {top.best_epoch} of {top.epochs}; "
                f"{top.describe()}",
            )
        )
    return facts


def top_trials(trials: Sequence[TrialRecord], k: int = TOP) -> pd.DataFrame:
    """The ``k`` best complete trials as a table of readable strings, best first."""
    winner = confirm.best(trials)
    # Confirmed configurations first, by their mean over seeds; then the rest by value.
    ranked = confirm.ranked(trials)[:k]
    by_number = {r.number: r for r in trials}
    rows = []
    for e in ranked:
        r = by_number[e.trial]
        noise = _noise(e, r.val_rows)
        row = {
            "trial": r.number,
            "val error": _with_noise(e, noise),
            "search seed": f"{e.search_value:.2%}" if e.confirmed else "",
            "within noise": _within_noise(e, noise, winner, by_number),
            "train error": f"{r.best_train_error:.2%}",
            "gap": f"{e.mean - r.best_train_error:+.2%}",
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


def _noise(e: confirm.Estimate, val_rows: int | None) -> float | None:
    """The standard error of a configuration's mean: over its seeds where confirmed (sd over
    sqrt(n)), else the binomial standard error of its single validation error."""
    return e.sem if e.confirmed else binomial_se(e.search_value, val_rows)


def _with_noise(e: confirm.Estimate, noise: float | None) -> str:
    if e.confirmed:
        return f"{e.mean:.2%} ± {e.std:.2%} (n={e.n})"
    return f"{e.mean:.2%}" + ("" if noise is None else f" ± {noise:.2%}")


def _within_noise(
    e: confirm.Estimate,
    noise: float | None,
    winner: confirm.Estimate | None,
    by_number: dict[int, TrialRecord],
) -> str:
    """'best'; 'yes' when the difference from the best is under two standard errors of the
    difference, else 'no'; with that difference in standard errors (``yes (1.4 SE)``), so
    that two configurations of equal mean but unequal spread read as what they are."""
    if winner is None or noise is None:
        return ""
    if e.trial == winner.trial:
        return "best"
    best_noise = _noise(winner, by_number[winner.trial].val_rows)
    if best_noise is None:
        return ""
    se = (noise**2 + best_noise**2) ** 0.5
    if se == 0.0:
        return "no" if e.mean > winner.mean else "yes"
    z = (e.mean - winner.mean) / se
    return f"{'yes' if z < 2 else 'no'} ({z:.1f} SE)"


def _pruner(name: str | None) -> str:
    return "no pruning" if name in (None, "none") else f"{name} pruner"


# --- the page --------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
div.wide { overflow-x: auto; }  /* a wide table scrolls, not off the page */
table.trials { font-size: 0.85em; }
th, td { padding: 0.25em 0.7em; text-align: left; border-bottom: 1px solid #e4e4e4; }
th { background: #f2f2f2; }
table.summary th { background: none; font-weight: 600; }
table.trials td { white-space: nowrap; }
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
    trials: Sequence[TrialRecord] | None = None,
) -> str:
    """One self-contained page: summary, top-trials table, every plot (embedded), experiment."""
    e = html.escape
    name = study.study_name
    trials = records(study) if trials is None else trials
    rows_seen = {r.val_rows for r in trials} - {None}
    val_note = (
        f"sqrt(p(1-p)/n) on the {rows_seen.pop():,} validation examples"
        if len(rows_seen) == 1
        else "sqrt(p(1-p)/n) on the validation examples"
    )
    rows = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    if table.empty:
        top = "<p>No complete trials yet.</p>"
    else:
        top = table.to_html(index=False, border=0, escape=True, classes="trials")
        top = f'<div class="wide">\n{top}\n</div>'
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
Confirmed configurations (re-trained on fresh seeds after the search) come first, as mean ±
sd over n seeds, with the search's own single-seed value beside it; other errors carry the
binomial standard error of {e(val_note)}. "within noise": the difference from the best is
less than two standard errors (SE) of that difference, so the data cannot tell them apart;
the number beside it is the difference in those standard errors.
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
