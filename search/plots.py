"""Figures of a study, drawn from the storage alone (matplotlib, Agg backend, PNG).

Every figure names the study in its title and labels its axes. Error axes use a square-root
scale: it keeps 0 (a training error of zero is common) and spreads the good trials, a few
percent apart, that a linear axis would squash under the diverged ones at 90 %.

Writing the same study twice gives byte-identical files: the PNGs carry no software version or
date, every figure is drawn in one fixed style, and nothing is random (Optuna's default
importance evaluator, PED-ANOVA, draws no random numbers).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from mlpsearch.engine import ACTIVATIONS  # noqa: E402
from mlpsearch.engine.files import write_atomic  # noqa: E402
from mlpsearch.trials import TrialRecord, best_first, records  # noqa: E402

DPI = 100
TOP_CURVES = 6  # learning curves drawn in curves.png
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu")
# One colour per activation, the same in every figure.
COLORS = dict(zip(ACTIVATIONS, plt.get_cmap("tab10").colors, strict=False))
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"
STYLE = {
    "figure.facecolor": "white",
    "axes.grid": True,
    "grid.color": "0.88",
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}
# The plots of a report, in the order the page shows them: file stem -> caption.
PLOTS = {
    "gap": "Train and validation error of every finished trial, best first: the vertical "
    "bar is the generalization gap.",
    "history": "Optimization history: each trial's validation error and the best so far.",
    "curves": "Learning curves of the best trials: error per epoch; the dotted line marks "
    "the best epoch.",
    "params": "Validation error against each numeric hyperparameter, coloured by activation.",
    "importances": "Hyperparameter importances (Optuna, PED-ANOVA).",
    "parallel": "Parallel coordinates of the complete trials, coloured by validation error; "
    "the best 10 % are drawn thick.",
    "dead_units": "Dead hidden units (largest fraction in any layer, last epoch) of "
    "ReLU-family trials against learning rate and init scale.",
}


# --- writing ---------------------------------------------------------------------------------


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Draw every plot of :data:`PLOTS` into ``folder`` (created); the files, in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = records(study)
    name = study.study_name
    makers: dict[str, Callable[[], Figure]] = {
        "gap": lambda: gap_figure(trials, name),
        "history": lambda: history_figure(trials, name),
        "curves": lambda: curves_figure(
            best_first(trials)[:TOP_CURVES], f"{name}: learning curves of the best trials"
        ),
        "params": lambda: params_figure(trials, name),
        "importances": lambda: importances_figure(study, trials),
        "parallel": lambda: parallel_figure(trials, name),
        "dead_units": lambda: dead_units_figure(trials, name),
    }
    paths = []
    for stem in PLOTS:
        path = folder / f"{stem}.png"
        with _style():
            save(makers[stem](), path)
        paths.append(path)
    return paths


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` (atomically) as a PNG with no date or software version inside, then
    release it."""
    write_atomic(
        path, lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None})
    )
    plt.close(fig)  # figures made by pyplot (Optuna's) stay registered until closed
    return path


def _style() -> Any:
    """Matplotlib's defaults plus :data:`STYLE`, whatever the process changed before."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(matplotlib.style.context("default"))
    stack.enter_context(matplotlib.rc_context(STYLE))
    return stack


# --- the figures -----------------------------------------------------------------------------


def gap_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Train and validation error at the best epoch of every finished trial, sorted."""
    done = [r for r in _measured(trials) if r.best_train_error is not None]
    if not done:
        return placeholder(f"{name}: train and validation error", "no finished trials yet")
    done.sort(key=lambda r: (r.best_val_error, r.number))
    x = np.arange(len(done))
    train = np.array([r.best_train_error for r in done])
    val = np.array([r.best_val_error for r in done])
    pruned = np.array([r.state == TrialState.PRUNED for r in done])

    fig = Figure(figsize=(max(8.0, min(16.0, 0.25 * len(done) + 4)), 5.0))
    ax = fig.add_subplot()
    ax.vlines(x, train, val, color="0.7", lw=3, zorder=1)
    for mask, fill, what in ((~pruned, True, "complete"), (pruned, False, "pruned")):
        if not mask.any():
            continue
        for y, color, label in ((train, TRAIN_COLOR, "train"), (val, VAL_COLOR, "validation")):
            ax.scatter(
                x[mask],
                y[mask],
                s=28,
                marker="o" if label == "validation" else "s",
                facecolors=color if fill else "none",
                edgecolors=color,
                zorder=2,
                label=f"{label} ({what})",
            )
    ax.plot([], [], color="0.7", lw=3, label="gap")
    _error_axis(ax, np.concatenate([train, val]))
    ax.set_xlim(-0.8, len(done) - 0.2)
    if len(done) <= 60:
        ax.set_xticks(x, [str(t.number) for t in done], rotation=90 if len(done) > 30 else 0)
        ax.set_xlabel("trial number, sorted by validation error (best left)")
    else:
        ax.set_xlabel("rank by validation error (best left)")
    ax.set_ylabel("error at the best epoch")
    ax.set_title(f"{name}: train vs validation error of {len(done)} finished trials")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def history_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Validation error per trial number, with the best-so-far line."""
    complete = sorted(best_first(trials), key=lambda r: r.number)
    pruned = [r for r in trials if r.state == TrialState.PRUNED and r.best_val_error]
    failed = [r for r in trials if r.state == TrialState.FAIL]
    if not complete and not pruned:
        return placeholder(f"{name}: optimization history", "no finished trials yet")
    fig = Figure(figsize=(9.0, 5.0))
    ax = fig.add_subplot()
    values = [t.value for t in complete]
    if complete:
        numbers = [t.number for t in complete]
        ax.scatter(numbers, values, s=24, color=VAL_COLOR, label="complete trial", zorder=3)
        best = np.minimum.accumulate(values)
        ax.step(
            [*numbers, max(t.number for t in trials)],
            [*best, best[-1]],
            where="post",
            color="black",
            lw=1.5,
            label=f"best so far ({best[-1]:.2%})",
        )
    pruned_values = [r.best_val_error for r in pruned]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            pruned_values,
            s=24,
            marker="x",
            color="0.5",
            label="pruned (error when stopped)",
            zorder=2,
        )
    if failed:
        ax.plot([], [], " ", label=f"{len(failed)} failed (not shown)")
    _error_axis(ax, np.array(values + pruned_values))
    ax.set_xlabel("trial number")
    ax.set_ylabel("validation error (best epoch)")
    ax.set_title(f"{name}: optimization history")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def curves_figure(trials: Sequence[TrialRecord], title: str, ncols: int = 3) -> Figure:
    """Small multiples: train and validation error per epoch of each trial, side by side."""
    with_curves = [r for r in trials if r.curves.val_error]
    if not with_curves:
        return placeholder(f"{title}: learning curves", "no trial with learning curves")
    n = len(with_curves)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    everything = np.concatenate(
        [
            np.array(curve, dtype=float)
            for r in with_curves
            for curve in (r.curves.train_error, r.curves.val_error)
        ]
    )
    for ax, r in zip(axes.flat, with_curves, strict=False):
        val = np.array(r.curves.val_error, dtype=float)  # None (diverged) -> nan
        train = np.array(r.curves.train_error, dtype=float)
        epochs = np.arange(1, len(val) + 1)
        ax.plot(epochs, train, color=TRAIN_COLOR, lw=1.5, label="train")
        ax.plot(epochs, val, color=VAL_COLOR, lw=1.5, label="validation")
        if r.best_epoch:
            ax.axvline(r.best_epoch, color="0.4", ls=":", lw=1.2, label="best epoch")
        best = r.best_val_error
        score = f"val {best:.2%}" if best is not None else r.state.name.lower()
        ax.set_title(f"trial {r.number}: {score}\n{r.describe()}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error")
        ax.tick_params(labelleft=True)
        _error_axis(ax, everything)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="upper right")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def params_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Validation error against each numeric hyperparameter, coloured by activation."""
    complete = best_first(trials)
    dists = numeric_distributions(complete)
    if not dists:
        return placeholder(
            f"{name}: validation error per hyperparameter",
            "no numeric hyperparameter was searched" if complete else "no complete trials yet",
        )
    ncols = min(3, len(dists))
    nrows = math.ceil(len(dists) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.4 * nrows + 1.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    values = np.array([r.value for r in complete])
    for ax, (param, dist) in zip(axes.flat, dists.items(), strict=False):
        having = [r for r in complete if param in r.params]
        ax.scatter(
            [r.params[param] for r in having],
            [r.value for r in having],
            c=[COLORS.get(r.activation, "black") for r in having],
            s=32,
            edgecolors="none",
        )
        _param_axis(ax, dist)
        ax.set_xlabel(param + (" (log scale)" if dist.log else ""))
        ax.set_ylabel("validation error")
        _error_axis(ax, values)
    for ax in axes.flat[len(dists) :]:
        ax.set_visible(False)
    _activation_legend(fig, complete)
    fig.suptitle(f"{name}: validation error against each numeric hyperparameter", fontsize=12)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def dead_units_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Dead-unit fraction against learning rate and init scale for ReLU-family trials."""
    family = [
        r
        for r in _measured(trials)
        if r.activation in RELU_FAMILY and r.dead_fraction and r.config
    ]
    title = f"{name}: dead hidden units of ReLU-family trials"
    if not family:
        return placeholder(title, f"no finished trial uses {', '.join(RELU_FAMILY)}")
    dead = [max(r.dead_fraction) for r in family]
    colors = [COLORS.get(r.activation, "black") for r in family]
    fig = Figure(figsize=(11.0, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, label, log) in zip(
        axes,
        (
            ("learning_rate", "learning rate (log scale)", True),
            ("init_scale", "init scale", False),
        ),
        strict=True,
    ):
        x = [r.setting(key) for r in family]
        ax.scatter(x, dead, c=colors, s=26, edgecolors="none")
        if log:
            _log_axis(ax, min(x), max(x))
        ax.set_xlabel(label)
        ax.set_ylabel("dead units (largest fraction in a layer)")
        ax.tick_params(labelleft=True)
        ax.set_ylim(-0.03, 1.03)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    _activation_legend(fig, family)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def importances_figure(study: optuna.Study, trials: Sequence[TrialRecord]) -> Figure:
    """Optuna's importance bar chart (PED-ANOVA: needs no scikit-learn, draws nothing random)."""
    name = study.study_name
    title = f"{name}: hyperparameter importances"
    complete = best_first(trials)
    if len(complete) < 2 or not any(r.distributions for r in complete):
        return placeholder(title, "needs at least 2 complete trials with searched parameters")
    ax, notes = _optuna_plot(optuna.visualization.matplotlib.plot_param_importances, study)
    if ax is None:
        return placeholder(title, notes[0])
    fig = ax.figure
    n = len(ax.get_yticks())
    fig.set_size_inches(9.0, 1.6 + 0.42 * n)
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_title("", loc="left")  # Optuna's own title
    ax.set_title(title + _note(notes))
    ax.set_xlabel("importance for reaching the best 10 % of trials (PED-ANOVA, sums to 1)")
    ax.set_ylabel("hyperparameter")
    fig.tight_layout()
    return fig


def parallel_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Parallel coordinates of the complete trials: one vertical axis per searched parameter.

    Drawn here rather than by Optuna, whose version overlaps its tick labels and draws the
    worst trials in white. Each axis spans the parameter's search range (log where the range
    is log); trials without the parameter (a layer they do not have) sit at "none", below.
    Lines are coloured by their rank in validation error; the best 10 % are thicker and drawn
    on top.
    """
    title = f"{name}: parallel coordinates of the complete trials"
    complete = best_first(trials)
    dists: dict[str, Any] = {}
    for r in complete:
        for k, d in r.distributions.items():
            dists.setdefault(k, d)
    dists = dict(sorted(dists.items(), key=lambda kv: _param_order(kv[0])))
    if len(complete) < 2 or not dists:
        return placeholder(title, "needs at least 2 complete trials with searched parameters")
    errors = np.array([r.value for r in complete])
    top = float(errors.max()) or 1.0
    ticks = [(math.sqrt(v / top), f"{100 * v:.3g}%") for v in _error_ticks(top)]
    columns = [(np.sqrt(errors / top), ticks)]
    labels = ["validation\nerror"]
    for param, dist in dists.items():
        columns.append(_parallel_axis([r.params.get(param) for r in complete], dist))
        labels.append(param.replace("_", "_\n", 1) if len(param) > 12 else param)
    positions = np.array([c[0] for c in columns]).T  # (trials, axes)

    fig = Figure(figsize=(max(9.0, 1.35 * len(columns) + 2.5), 5.8))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    # colour by rank: a few diverged trials at 80 % would wash out the differences that matter
    norm = matplotlib.colors.Normalize(0, len(complete) - 1)
    best = max(1, math.ceil(0.1 * len(complete)))
    x = np.arange(len(columns))
    for rank in range(len(complete) - 1, -1, -1):  # complete is sorted best first
        ax.plot(
            x,
            positions[rank],
            color=cmap(norm(rank)),
            lw=2.4 if rank < best else 1.0,
            alpha=0.95 if rank < best else 0.6,
        )
    for i, (_, ticks) in enumerate(columns):
        ax.axvline(i, color="0.25", lw=1)
        for pos, text in ticks:
            ax.text(
                i + 0.04,
                pos,
                text,
                fontsize=8,
                va="center",
                ha="left",
                color="0.1",
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
                zorder=5,
            )
    ax.set_xticks(x, labels)
    ax.set_yticks([])
    ax.grid(False)
    ax.set_xlim(-0.2, len(columns) - 0.5)
    ax.set_ylim(-0.17, 1.05)
    ax.set_xlabel("searched hyperparameter (each vertical axis spans its search range)")
    ax.set_ylabel("value, low to high (bottom: none)")
    ax.set_title(title)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, pad=0.02)
    bar.set_label("validation error (colour by rank, best dark)")
    marks = sorted({round(r) for r in np.linspace(0, len(complete) - 1, 6)})
    bar.set_ticks(marks, labels=[f"{errors[r]:.2%}" for r in marks])
    fig.tight_layout()
    return fig


def _parallel_axis(values: list[Any], dist: Any) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] of ``values`` on one axis (missing: -0.1), and (position, label)s."""
    none = -0.1
    if isinstance(dist, CategoricalDistribution):
        k = len(dist.choices)
        where = {c: (i / (k - 1) if k > 1 else 0.5) for i, c in enumerate(dist.choices)}
        pos = np.array([none if v is None else where[v] for v in values])
        ticks = [(p, _short(c)) for c, p in where.items()]
    else:
        f = math.log10 if dist.log else float
        low, high = f(dist.low), f(dist.high)
        span = (high - low) or 1.0
        pos = np.array([none if v is None else (f(v) - low) / span for v in values])
        ticks = [((f(v) - low) / span, _short(v)) for v in _nice_values(dist)]
    if any(v is None for v in values):
        ticks.append((none, "none"))
    return pos, ticks


def _nice_values(dist: Any) -> list[float]:
    """A few round tick values inside a numeric distribution's range, ends included."""
    low, high = dist.low, dist.high
    if isinstance(dist, IntDistribution) and not dist.log and (high - low) / dist.step <= 6:
        return list(range(low, high + 1, dist.step))
    if dist.log:
        inner = [
            m * 10.0**e
            for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            for m in (1, 2, 5)
        ]
        inner = [v for v in inner if low * 1.25 < v < high / 1.25]
        if len(inner) > 5:
            inner = [v for v in inner if str(v).lstrip("0.").startswith("1")] or inner[::2]
    else:
        inner = [float(v) for v in np.linspace(low, high, 5)[1:-1]]
    return [low, *inner, high]


def placeholder(title: str, message: str) -> Figure:
    """A figure that says why there is nothing to draw (so every report has every file)."""
    fig = Figure(figsize=(8.0, 2.5))
    fig.suptitle(title, fontsize=12)
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=11, color="0.3")
    return fig


# --- helpers ---------------------------------------------------------------------------------


def numeric_distributions(trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """The numeric searched hyperparameters of ``trials``: name -> distribution, sorted."""
    out: dict[str, Any] = {}
    for r in trials:
        for k, d in r.distributions.items():
            if isinstance(d, FloatDistribution | IntDistribution):
                out.setdefault(k, d)
    return dict(sorted(out.items(), key=lambda kv: _param_order(kv[0])))


def _param_order(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def _measured(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Complete and pruned trials that measured a validation error."""
    ok = (TrialState.COMPLETE, TrialState.PRUNED)
    return [r for r in trials if r.state in ok and r.best_val_error is not None]


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _error_axis(ax: Any, values: np.ndarray) -> None:
    """A square-root y axis from 0 to just above the largest error, ticks in percent."""
    finite = values[np.isfinite(values)] if len(values) else values
    top = float(finite.max()) if len(finite) else 1.0
    top = min(1.0, max(top, 0.01)) * 1.08
    ax.set_yscale("function", functions=(_sqrt, np.square))
    ax.set_ylim(0.0, top)
    ax.yaxis.set_major_locator(FixedLocator(_error_ticks(top)))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g}%"))


def _error_ticks(top: float) -> list[float]:
    """Round error values up to ``top``, at least 6 % of a square-root axis apart."""
    candidates = [0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    kept: list[float] = []
    for v in candidates:
        if v <= top and (not kept or math.sqrt(v) - math.sqrt(kept[-1]) >= 0.06 * math.sqrt(top)):
            kept.append(v)
    return kept


def _param_axis(ax: Any, dist: Any) -> None:
    """The x axis of one hyperparameter: its whole search range (so that one sees where in it
    the good trials lie), log where the range is, whole numbers for integers."""
    if dist.log:
        _log_axis(ax, dist.low, dist.high)
        ax.set_xlim(dist.low / 1.15, dist.high * 1.15)
        return
    margin = 0.04 * (dist.high - dist.low)
    ax.set_xlim(dist.low - margin, dist.high + margin)
    if isinstance(dist, IntDistribution):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_axis(ax: Any, low: float, high: float) -> None:
    """A log x axis labelled 0.01, 0.02, 0.05, ... instead of 10^-2, 2x10^-2 (which overlap);
    only powers of ten over more than two decades."""
    ax.set_xscale("log")
    wide = high > 100 * low
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(subs="all"))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _sqrt(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(x, 0.0, None))


def _activation_legend(fig: Figure, trials: Sequence[TrialRecord]) -> None:
    used = {r.activation for r in trials}
    present = [a for a in ACTIVATIONS if a in used]
    handles = [
        Line2D([], [], ls="", marker="o", color=COLORS.get(a, "black"), label=a) for a in present
    ]
    fig.legend(handles=handles, title="activation", loc="center right")


def _optuna_plot(function: Callable[..., Any], study: optuna.Study, **kwargs: Any):
    """Call one of Optuna's matplotlib plots; (axes or None, the warnings it gave).

    Optuna switches pyplot to its own style globally; the caller's style context undoes that.
    Its experimental warnings are silenced; other warnings are returned for the title.
    """
    before = set(plt.get_fignums())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            ax = function(study, **kwargs)
        except (ValueError, RuntimeError) as err:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
            return None, [f"Optuna could not draw it: {err}"]
    notes = sorted({str(w.message).split(". ")[0].rstrip(".") for w in caught})
    return ax, notes


def _note(notes: list[str]) -> str:
    return f"\n(Optuna: {'; '.join(notes)})" if notes else ""
