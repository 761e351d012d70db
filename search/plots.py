"""Figures of a study, drawn from the storage alone (matplotlib, Agg backend, PNG).

Every figure names the study in its title and labels its axes. Error axes fit the errors
shown: from just below the lowest to just above the highest that is not an outlier (Tukey's
fence, Q3 + 1.5 IQR), so that the good trials, often a fraction of a point apart, are spread
out; errors above the axis are drawn as triangles on its top edge and counted in the legend.
Validation errors carry error bars: the binomial standard error sqrt(p(1-p)/n) of a single
run, or the standard deviation over seeds of a confirmed configuration (over many trials, a
faint band or faint bars, so that the points stay visible). Legends sit under the axes, never
on the data. Confirmation trials (``mlpsearch.confirm``) are not trials of the search: plots
of the search leave them out and show the confirmed spread instead.

Every figure is :data:`WIDTH` inches wide (the report's page shows them at their own size, so
text is one size throughout), in one style (:data:`STYLE`, :data:`COLORS`).

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
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    IntDistribution,
)
from optuna.trial import TrialState  # noqa: E402

from mlpsearch import confirm, outcomes  # noqa: E402
from mlpsearch.engine import ACTIVATIONS  # noqa: E402
from mlpsearch.engine.files import write_atomic  # noqa: E402
from mlpsearch.summary import binomial_se  # noqa: E402
from mlpsearch.trials import TrialRecord, best_first, records  # noqa: E402

DPI = 100
WIDTH = 11.6  # inches: every figure; at DPI 100 it fits report.html's column unscaled
MANY = 60  # more points than this: error bars drawn faint (or as a band), not one per point
TOP_CURVES = 6  # learning curves drawn in curves.png
FEW_FOR_IMPORTANCES = 30  # fewer complete trials: importances are flagged as a rough guide
PARALLEL_COLOURED = 20  # parallel coordinates: the best this many in colour, the rest faint
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu")
# One colour per activation, the same in every figure.
COLORS = dict(zip(ACTIVATIONS, plt.get_cmap("tab10").colors, strict=False))
TRAIN_COLOR, VAL_COLOR, CONFIRM_COLOR = "#1f77b4", "#d62728", "#2ca02c"
STYLE = {
    "figure.facecolor": "white",
    "axes.grid": True,
    "axes.axisbelow": True,  # grid lines behind the points, not through them
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
    "history": "Optimization history: each trial's validation error and the best so far; "
    "diamonds: confirmed configurations, mean ± sd over their seeds.",
    "curves": "Learning curves of the best trials (in the order of the top table: confirmed "
    "configurations first): error per epoch; the dotted line marks the best epoch.",
    "params": "Validation error against each hyperparameter, coloured by activation; "
    "pruned trials hollow, at their error when stopped; bars: binomial standard error; "
    "points of a few-valued hyperparameter spread sideways so that they do not hide each other.",
    "importances": "Hyperparameter importances (Optuna, PED-ANOVA) over the search's complete "
    "trials.",
    "parallel": "Parallel coordinates of the complete trials: the best 20 coloured by "
    "validation error, the others faint grey.",
    "dead_units": "Dead hidden units (largest fraction in any layer, last epoch) of "
    "ReLU-family trials against learning rate and init scale; pruned trials hollow.",
}


# --- writing ---------------------------------------------------------------------------------


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Draw every plot of :data:`PLOTS` into ``folder`` (created); the files, in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    makers = _makers(study)
    paths = []
    for stem in PLOTS:
        path = folder / f"{stem}.png"
        with _style():
            save(makers[stem](), path)
        paths.append(path)
    return paths


def figure(study: optuna.Study, name: str) -> Figure:
    """The plot ``name`` of :data:`PLOTS` as a Figure, drawn as the report draws it.

    The figure is not registered with pyplot (closing it is not needed); in a notebook it shows
    as the cell's result.
    """
    if name not in PLOTS:
        from mlpsearch.errors import BadInput

        raise BadInput(f"plot {name!r}: no such plot; the plots are: {', '.join(PLOTS)}")
    with _style():
        fig = _makers(study)[name]()
    plt.close(fig)  # Optuna's figures come from pyplot: unregister it (others: no-op), keep it
    return fig


def _makers(study: optuna.Study) -> dict[str, Callable[[], Figure]]:
    """One function per plot of :data:`PLOTS`, drawing it from ``study``'s trials."""
    trials = records(study)
    name = study.study_name
    ranked = confirm.ranked(trials)  # the top table's order: confirmed configurations first
    by_number = {t.number: t for t in trials}
    return {
        "gap": lambda: gap_figure(trials, name),
        "history": lambda: history_figure(trials, name),
        "curves": lambda: curves_figure(
            [by_number[e.trial] for e in ranked[:TOP_CURVES]],
            f"{name}: learning curves of the best trials",
            estimates={e.trial: e for e in ranked},
        ),
        "params": lambda: params_figure(trials, name),
        "importances": lambda: importances_figure(study, trials),
        "parallel": lambda: parallel_figure(trials, name),
        "dead_units": lambda: dead_units_figure(trials, name),
    }


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` (atomically) as a PNG with no date or software version inside, then
    release it."""
    try:
        with _style():  # rendering reads the style too: the same bytes from report or figure()
            write_atomic(
                path, lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None})
            )
    finally:
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
    done = [t for t in _measured(trials) if t.best_train_error is not None]
    if not done:
        return placeholder(f"{name}: train and validation error", "no finished trials yet")
    done.sort(key=lambda t: (t.best_val_error, t.number))
    x = np.arange(len(done))
    train = np.array([t.best_train_error for t in done])
    val = np.array([t.best_val_error for t in done])
    se = np.array([_se(t, t.best_val_error) for t in done])
    pruned = np.array([t.state == TrialState.PRUNED for t in done])

    fig = Figure(figsize=(WIDTH, 5.2))
    ax = fig.add_subplot()
    top = _error_axis(ax, np.concatenate([train, val]), np.concatenate([0 * se, se]))
    ax.vlines(x, np.minimum(train, top), np.minimum(val, top), color="0.8", lw=3, zorder=1)
    if len(done) > MANY:  # one bar per trial would be a wall of red: a band around the points
        ax.fill_between(
            x, val - se, val + se, step="mid", color=VAL_COLOR, alpha=0.13, lw=0, zorder=0
        )
    else:
        ax.errorbar(x, val, yerr=se, fmt="none", ecolor=VAL_COLOR, elinewidth=0.8, alpha=0.6)
    for mask, fill, what in ((~pruned, True, "complete"), (pruned, False, "pruned")):
        if not mask.any():
            continue
        for y, color, label in ((train, TRAIN_COLOR, "train"), (val, VAL_COLOR, "validation")):
            ax.scatter(
                x[mask],
                y[mask],
                s=22 if len(done) <= MANY else 14,
                marker="o" if label == "validation" else "s",
                facecolors=color if fill else "none",
                edgecolors=color,
                zorder=2,
                label=f"{label} ({what})",
            )
    ax.plot([], [], color="0.8", lw=3, label="gap")
    if len(done) > MANY:
        ax.fill_between([], [], [], color=VAL_COLOR, alpha=0.13, lw=0, label="± standard error")
    else:
        ax.errorbar([], [], yerr=[], fmt="none", ecolor=VAL_COLOR, label="± standard error")
    _above(ax, x, train, top)
    n = _above(ax, x, val, top)  # validation is the higher of the two
    if n:
        ax.scatter([], [], marker="^", color="0.35", label=_above_label(n, val))
    ax.set_xlim(-0.8, len(done) - 0.2)
    if len(done) <= 60:
        ax.set_xticks(x, [str(t.number) for t in done], rotation=90 if len(done) > 30 else 0)
        ax.set_xlabel("trial number, sorted by validation error (best left)")
    else:
        ax.set_xlabel("rank by validation error (best left)")
    ax.set_ylabel("error at the best epoch")
    ax.set_title(f"{name}: train vs validation error of {len(done)} finished trials")
    _layout(fig, _legend_below(fig, *ax.get_legend_handles_labels()))
    return fig


def history_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Validation error per trial number, with the best-so-far line and the confirmed
    configurations (mean ± sd over their seeds, beside their search trial)."""
    complete = sorted(best_first(trials), key=lambda t: t.number)
    pruned = [t for t in _measured(trials) if t.state == TrialState.PRUNED]
    if not complete and not pruned:
        return placeholder(f"{name}: optimization history", "no finished trials yet")
    fig = Figure(figsize=(WIDTH, 5.2))
    ax = fig.add_subplot()
    values = [t.value for t in complete]
    ses = [_se(t) for t in complete]
    pruned_values = [t.best_val_error for t in pruned]
    top = _error_axis(ax, np.array(values + pruned_values), np.array(ses + [0.0] * len(pruned)))
    last = max(t.number for t in complete + pruned)
    if complete:
        many = len(complete) > MANY
        numbers = [t.number for t in complete]
        ax.errorbar(
            numbers,
            values,
            yerr=ses,
            fmt="o",
            ms=4,
            color=VAL_COLOR,
            elinewidth=0.7,
            ecolor=(0.84, 0.15, 0.16, 0.18 if many else 0.35),
            label="complete trial (± standard error)",
            zorder=3,
        )
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            pruned_values,
            s=22,
            marker="o",
            facecolors="none",
            edgecolors="0.5",
            label="pruned (best error before it stopped)",
            zorder=2,
        )
    if complete:
        best = np.minimum.accumulate(values)
        ax.step(
            [*numbers, last],
            [*best, best[-1]],
            where="post",
            color="black",
            lw=1.5,
            label=f"best so far ({best[-1]:.2%}, one seed)",
        )
    shift = max(0.6, 0.012 * last)  # beside the search trial's point, not on it
    winner = confirm.best(trials)
    others = [e for e in confirm.ranked(trials) if e.confirmed and e is not winner]
    if others:
        ax.errorbar(
            [e.trial + shift for e in others],
            [e.mean for e in others],
            yerr=[e.std for e in others],
            fmt="D",
            ms=6,
            mfc="white",
            color=CONFIRM_COLOR,
            capsize=3,
            zorder=4,
            label="confirmed on fresh seeds (mean ± sd)",
        )
    if winner is not None and winner.confirmed:
        ax.errorbar(
            [winner.trial + shift],
            [winner.mean],
            yerr=[winner.std],
            fmt="D",
            ms=7,
            color=CONFIRM_COLOR,
            capsize=4,
            zorder=5,
            label=f"confirmed best, trial {winner.trial}: {winner.mean:.2%} ± {winner.std:.2%} "
            f"over {winner.n} seeds",
        )
    everything = [t.number for t in complete] + [t.number for t in pruned]
    n = _above(ax, everything, values + pruned_values, top)
    if n:
        ax.scatter([], [], marker="^", color="0.35", label=_above_label(n, values + pruned_values))
    counted = outcomes.counts(confirm.search_trials(trials))
    unseen = [f"{counted[k]} {k}" for k in ("failed", "interrupted") if counted[k]]
    if unseen:
        ax.plot([], [], " ", label=f"not shown: {', '.join(unseen)}")
    ax.set_xlabel("trial number")
    ax.set_ylabel("validation error (best epoch)")
    ax.set_title(f"{name}: optimization history")
    handles, labels = ax.get_legend_handles_labels()
    order = ("complete", "pruned", "best so far", "confirmed on", "confirmed best", "")
    rank = [next(i for i, o in enumerate(order) if text.startswith(o)) for text in labels]
    pairs = sorted(zip(rank, range(len(labels)), handles, labels, strict=True))
    _layout(fig, _legend_below(fig, [p[2] for p in pairs], [p[3] for p in pairs], ncols=2))
    return fig


def curves_figure(
    trials: Sequence[TrialRecord],
    title: str,
    ncols: int = 3,
    estimates: dict[int, confirm.Estimate] | None = None,
) -> Figure:
    """Small multiples: train and validation error per epoch of each trial, side by side;
    ``estimates`` (by trial number) adds a confirmed configuration's mean ± sd to its title."""
    with_curves = [t for t in trials if t.curves.val_error]
    if not with_curves:
        return placeholder(f"{title}: learning curves", "no trial with learning curves")
    n = len(with_curves)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(WIDTH, 3.4 * nrows + 1.1))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    # The axis fits the second half of the curves: where trials are compared, not epoch 1.
    tails = np.concatenate(
        [
            np.array(curve, dtype=float)[len(curve) // 2 :]
            for t in with_curves
            for curve in (t.curves.train_error, t.curves.val_error)
        ]
    )
    for ax, t in zip(axes.flat, with_curves, strict=False):
        val = np.array(t.curves.val_error, dtype=float)  # None (diverged) -> nan
        train = np.array(t.curves.train_error, dtype=float)
        epochs = np.arange(1, len(val) + 1)
        ax.plot(epochs, train, color=TRAIN_COLOR, lw=1.5, label="train (evaluation mode)")
        se = np.array([_se(t, v) if np.isfinite(v) else 0.0 for v in val])
        ax.fill_between(epochs, val - se, val + se, color=VAL_COLOR, alpha=0.15, lw=0)
        ax.plot(epochs, val, color=VAL_COLOR, lw=1.5, label="validation (± standard error)")
        if t.best_epoch:
            ax.axvline(t.best_epoch, color="0.4", ls=":", lw=1.2, label="best epoch")
        best = t.best_val_error
        score = f"val {best:.2%}" if best is not None else t.state.name.lower()
        e = (estimates or {}).get(t.number)
        if e is not None and e.confirmed:
            score += f"; {e.n} seeds: {e.mean:.2%} ± {e.std:.2%}"
        ax.set_title(f"trial {t.number}: {score}\n{t.describe()}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("error")
        ax.tick_params(labelleft=True)
        _error_axis(ax, tails)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    _layout(fig, _legend_below(fig, *axes.flat[0].get_legend_handles_labels()))
    return fig


def params_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Validation error against each searched hyperparameter, coloured by activation; pruned
    trials hollow, at their error when stopped. Numeric hyperparameters on their search range,
    categorical ones as one column per choice; points of a hyperparameter with few values are
    spread sideways (by a fixed offset per trial number) so that they do not hide each other."""
    finished = _measured(trials)
    dists = searched_distributions(finished)
    if not dists:
        return placeholder(
            f"{name}: validation error per hyperparameter",
            "no hyperparameter was searched" if finished else "no finished trials yet",
        )
    ncols = min(3 if len(dists) <= 9 else 4, len(dists))
    nrows = math.ceil(len(dists) / ncols)
    fig = Figure(figsize=(WIDTH, 3.0 * nrows + 1.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)

    def error(t: TrialRecord) -> float:
        if t.state == TrialState.COMPLETE:
            return t.value
        return t.val_error if t.val_error is not None else t.best_val_error  # when stopped

    values = np.array([error(t) for t in finished])
    ses = np.array([_se(t) if t.state == TrialState.COMPLETE else 0.0 for t in finished])
    faint = sum(t.state == TrialState.COMPLETE for t in finished) > MANY
    for i, (ax, (param, dist)) in enumerate(zip(axes.flat, dists.items(), strict=False)):
        top = _error_axis(ax, values, ses)
        for state, filled in ((TrialState.PRUNED, False), (TrialState.COMPLETE, True)):
            having = [t for t in finished if param in t.params and t.state == state]
            if not having:
                continue
            x = _param_positions(having, param, dist)
            y = [error(t) for t in having]
            colors = [COLORS.get(t.activation, "black") for t in having]
            if filled:
                ax.errorbar(
                    x,
                    y,
                    yerr=[_se(t) for t in having],
                    fmt="none",
                    ecolor="0.6",
                    elinewidth=0.7,
                    alpha=0.35 if faint else 0.8,
                )
            ax.scatter(
                x,
                y,
                s=26 if filled else 22,
                facecolors=colors if filled else "none",
                edgecolors=colors,
                linewidths=1.0,
                zorder=3 if filled else 2,
            )
            _above(ax, x, y, top)
        _param_axis(ax, dist)
        ax.set_xlabel(param + (" (log scale)" if getattr(dist, "log", False) else ""))
        if i % ncols == 0:
            ax.set_ylabel("validation error")
    for ax in axes.flat[len(dists) :]:
        ax.set_visible(False)
    fig.suptitle(f"{name}: validation error against each hyperparameter", fontsize=12)
    _layout(fig, _activation_legend(fig, finished))
    return fig


def dead_units_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Dead-unit fraction against learning rate and init scale for ReLU-family trials; pruned
    trials hollow."""
    family = [
        t
        for t in _measured(trials)
        if t.activation in RELU_FAMILY and t.dead_fraction and t.config
    ]
    title = f"{name}: dead hidden units of ReLU-family trials"
    if not family:
        return placeholder(title, f"no finished trial uses {', '.join(RELU_FAMILY)}")
    dead = np.array([max(t.dead_fraction) for t in family])
    colors = [COLORS.get(t.activation, "black") for t in family]
    hollow = np.array([t.state == TrialState.PRUNED for t in family])
    # the axis fits the fractions seen (at least 0 to 5%), not always 0 to 100%
    top = min(1.0, max(0.05, float(dead.max()) * 1.08))
    fig = Figure(figsize=(WIDTH, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (key, label, log) in zip(
        axes,
        (
            ("learning_rate", "learning rate (log scale)", True),
            ("init_scale", "init scale", False),
        ),
        strict=True,
    ):
        x = np.array([t.setting(key) for t in family], dtype=float)
        for mask, filled in ((hollow, False), (~hollow, True)):
            if mask.any():
                c = [colors[i] for i in np.flatnonzero(mask)]
                ax.scatter(
                    x[mask],
                    dead[mask],
                    s=26 if filled else 22,
                    facecolors=c if filled else "none",
                    edgecolors=c,
                    linewidths=1.0,
                )
        if log:
            _log_axis(ax, x.min(), x.max())
        ax.set_xlabel(label)
        ax.set_ylabel("dead units (largest fraction in a layer)")
        ax.tick_params(labelleft=True)
        ax.set_ylim(-0.03 * top, top * 1.03)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    fig.suptitle(title, fontsize=12)
    _layout(fig, _activation_legend(fig, family))
    return fig


def importances_figure(study: optuna.Study, trials: Sequence[TrialRecord]) -> Figure:
    """Hyperparameter importances (Optuna's PED-ANOVA: needs no scikit-learn, draws nothing
    random) over the search's complete trials, drawn in the style of every other figure."""
    name = study.study_name
    title = f"{name}: hyperparameter importances"
    complete = best_first(trials)
    if len(complete) < 2 or not any(t.distributions for t in complete):
        return placeholder(title, "needs at least 2 complete trials with searched parameters")
    search = optuna.create_study(direction="minimize")  # the search alone: no confirmations
    search.add_trials(
        optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value)
        for t in complete
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            found = optuna.importance.get_param_importances(
                search, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        except (ValueError, RuntimeError) as err:
            return placeholder(title, f"Optuna could not compute them: {err}")
    notes = [
        f"Optuna: {m}" for m in sorted({str(w.message).split(". ")[0].rstrip(".") for w in caught})
    ]
    if not found:
        return placeholder(title, "no parameter varies across the complete trials")
    names = list(found)[::-1]  # most important on top
    values = [found[k] for k in names]
    if len(complete) < FEW_FOR_IMPORTANCES:
        notes.insert(0, "too few for more than a rough guide")
    fig = Figure(figsize=(WIDTH, 1.6 + 0.42 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, values, color=VAL_COLOR, alpha=0.85, height=0.6)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", ha="left", fontsize=9)
    ax.set_xlim(0, max(values) * 1.15 or 1.0)
    ax.grid(axis="y", visible=False)
    ax.set_title(f"{title} over {len(complete)} complete trials" + _note(notes))
    ax.set_xlabel("importance for reaching the best 10 % of trials (PED-ANOVA, sums to 1)")
    ax.set_ylabel("hyperparameter")
    fig.tight_layout()
    return fig


def parallel_figure(trials: Sequence[TrialRecord], name: str) -> Figure:
    """Parallel coordinates of the complete trials: one vertical axis per searched parameter.

    Drawn here rather than by Optuna, whose version overlaps its tick labels and draws the
    worst trials in white. Each axis spans the parameter's search range (log where the range
    is log); trials without the parameter (a layer they do not have) sit at "none", below.
    The best :data:`PARALLEL_COLOURED` trials are coloured by rank in validation error and
    drawn on top; the others are faint grey lines behind them, so 200 trials stay readable.
    """
    title = f"{name}: parallel coordinates of the complete trials"
    complete = best_first(trials)
    dists: dict[str, Any] = {}
    for t in complete:
        for k, d in t.distributions.items():
            dists.setdefault(k, d)
    dists = dict(sorted(dists.items(), key=lambda kv: _param_order(kv[0])))
    if len(complete) < 2 or not dists:
        return placeholder(title, "needs at least 2 complete trials with searched parameters")
    errors = np.array([t.value for t in complete])
    # the error axis fits the errors, like every other error axis (outliers at its top)
    q1, q3 = np.percentile(errors, [25, 75])
    inside = errors[errors <= q3 + 1.5 * (q3 - q1) + 1e-12]
    low, high = float(inside.min()), float(inside.max())
    span = (high - low) or 0.01
    err_pos = np.clip((errors - low) / span, 0.0, 1.0)
    locator = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    ticks = [((v - low) / span, _percent(v)) for v in locator.tick_values(low, high)]
    ticks = [(p, text) for p, text in ticks if -0.01 <= p <= 1.01]
    if errors.max() > high:
        ticks.append((1.0, f"≥ {_percent(high)}"))
    columns = [(err_pos, ticks)]
    labels = ["validation\nerror"]
    for param, dist in dists.items():
        columns.append(_parallel_axis([t.params.get(param) for t in complete], dist))
        labels.append(param.replace("_", "_\n", 1) if len(param) > 9 else param)
    positions = np.array([c[0] for c in columns]).T  # (trials, axes)

    fig = Figure(figsize=(WIDTH, 5.8))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    coloured = min(PARALLEL_COLOURED, len(complete))
    norm = matplotlib.colors.Normalize(0, max(coloured - 1, 1))
    x = np.arange(len(columns))
    for rank in range(len(complete) - 1, coloured - 1, -1):  # the rest, faint, behind
        ax.plot(x, positions[rank], color="0.6", lw=0.8, alpha=0.25, zorder=1)
    for rank in range(coloured - 1, -1, -1):  # complete is sorted best first
        ax.plot(x, positions[rank], color=cmap(norm(rank)), lw=1.8, alpha=0.95, zorder=2)
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
    rest = len(complete) - coloured
    more = f"\nthe best {coloured} in colour, {rest} others in grey" if rest else ""
    ax.set_title(title + more)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax, pad=0.02)
    bar.set_label(f"validation error of the best {coloured} (dark: best)")
    marks: dict[str, int] = {}  # one tick per distinct error shown (errors repeat on small sets)
    for r in np.linspace(0, coloured - 1, min(6, coloured)):
        marks.setdefault(f"{errors[round(r)]:.2%}", round(r))
    bar.set_ticks(list(marks.values()), labels=list(marks))
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


def searched_distributions(trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """Every searched hyperparameter of ``trials``: name -> distribution, in the order of the
    parallel coordinates (by name, layers in order)."""
    out: dict[str, Any] = {}
    for t in trials:
        for k, d in t.distributions.items():
            out.setdefault(k, d)
    return dict(sorted(out.items(), key=lambda kv: _param_order(kv[0])))


def _param_order(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def _measured(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Complete and pruned trials of the search that measured a validation error."""
    ok = (TrialState.COMPLETE, TrialState.PRUNED)
    return [
        t
        for t in trials
        if t.state in ok and t.best_val_error is not None and not t.is_confirmation
    ]


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _error_axis(ax: Any, values: np.ndarray, se: np.ndarray | None = None) -> float:
    """A linear y axis fitted to ``values`` (errors in [0, 1]), ticks in percent; returns its
    top. The top is the largest value below Tukey's upper fence (Q3 + 1.5 IQR), so that a few
    diverged trials do not squash the rest; draw what lies above with :func:`_above`. With
    ``se`` (one standard error per value) the bottom leaves room for the error bars of the
    lowest values. Values at 0% are drawn whole: the axis reaches a little below 0%, which
    gets no tick label."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        values, finite, se = np.array([0.0, 1.0]), np.array([True, True]), None
    v = values[finite]
    q1, q3 = np.percentile(v, [25, 75])
    inside = v <= q3 + 1.5 * (q3 - q1) + 1e-12
    low, high = float(v[inside].min()), float(v[inside].max())
    pad = max(0.06 * (high - low), 0.002)
    bottom = low - pad
    if se is not None:
        spread = np.nan_to_num(np.asarray(se, dtype=float)[finite][inside])
        bottom = min(bottom, float((v[inside] - spread).min()) - pad / 3)
    bottom, top = max(-pad / 2, bottom), min(1.0, high + pad)
    ax.set_ylim(bottom, top)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(_percent))
    return top


def _percent(v: float, _: Any = None) -> str:
    if v < -1e-12:
        return ""  # below 0%: room for the points at 0%, not a value
    return f"{100 * v:.{max(0, min(2, _decimals(v)))}f}%"


def _decimals(v: float) -> int:
    text = f"{100 * v:.2f}".rstrip("0").rstrip(".")
    return len(text.split(".")[1]) if "." in text else 0


def _above(ax: Any, x: Any, y: Any, top: float, color: Any = "0.35") -> int:
    """Draw the points of ``(x, y)`` above ``top`` as triangles on the axis's top edge; how
    many there were (for the legend)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    over = np.isfinite(y) & (y > top)
    if over.any():
        ax.scatter(
            x[over],
            np.full(over.sum(), top),
            marker="^",
            s=30,
            color=color,
            clip_on=False,
            zorder=4,
        )
    return int(over.sum())


def _above_label(n: int, values: Any) -> str:
    worst = np.nanmax(np.asarray(values, dtype=float))
    return f"{n} above the axis (up to {worst:.1%})"


def _legend_below(
    fig: Figure, handles: list[Any], labels: list[str], ncols: int | None = None
) -> float:
    """The legend under the axes, centred (never over the data); returns the part of the
    figure's height it takes, for :func:`_layout`."""
    if not handles:
        return 0.0
    ncols = ncols or min(len(handles), 4)
    rows = math.ceil(len(handles) / ncols)
    fig.legend(handles, labels, loc="lower center", ncols=ncols, frameon=False)
    return (0.12 + 0.24 * rows) / fig.get_figheight()


def _layout(fig: Figure, legend: float = 0.0) -> None:
    """Tight layout above a legend that takes the bottom ``legend`` part of the figure."""
    fig.tight_layout(rect=(0, legend, 1, 1))


def _se(t: TrialRecord, value: float | None = None) -> float:
    """Binomial standard error of a trial's validation error (0 where unknown)."""
    v = t.value if value is None else value
    se = binomial_se(v, t.val_rows) if v is not None else None
    return 0.0 if se is None else se


def _param_positions(trials: Sequence[TrialRecord], param: str, dist: Any) -> np.ndarray:
    """Where on the x axis of ``param`` each trial goes: its value; a choice's index for a
    categorical; spread sideways by a fixed offset per trial number where the values are few
    (a categorical, a small integer range), so that equal values do not hide each other."""
    if isinstance(dist, CategoricalDistribution):
        index = {c: i for i, c in enumerate(dist.choices)}
        return np.array([index[t.params[param]] for t in trials]) + _jitter(trials, 0.6)
    x = np.array([t.params[param] for t in trials], dtype=float)
    if isinstance(dist, IntDistribution) and not dist.log and _few(dist):
        x = x + _jitter(trials, 0.5 * dist.step)
    return x


def _few(dist: Any) -> bool:
    return (dist.high - dist.low) / dist.step <= 10


def _jitter(trials: Sequence[TrialRecord], width: float) -> np.ndarray:
    """A fixed offset in [-width/2, width/2) per trial number (golden-ratio sequence: spread
    evenly, the same every time, no random numbers)."""
    return np.array([((t.number * 0.6180339887) % 1.0 - 0.5) * width for t in trials])


def _param_axis(ax: Any, dist: Any) -> None:
    """The x axis of one hyperparameter: its whole search range (so that one sees where in it
    the good trials lie), log where the range is, whole numbers for integers; one column per
    choice for a categorical."""
    if isinstance(dist, CategoricalDistribution):
        k = len(dist.choices)
        ax.set_xticks(range(k), [_short(c) for c in dist.choices])
        ax.set_xlim(-0.6, k - 0.4)
        ax.grid(axis="x", visible=False)
        return
    if dist.log:
        _log_axis(ax, dist.low, dist.high)
        ax.set_xlim(dist.low / 1.15, dist.high * 1.15)
        return
    margin = 0.04 * (dist.high - dist.low)
    if isinstance(dist, IntDistribution):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if _few(dist):  # room for the points spread sideways
            margin = max(margin, 0.45 * dist.step)
    ax.set_xlim(dist.low - margin, dist.high + margin)


def _log_axis(ax: Any, low: float, high: float) -> None:
    """A log x axis labelled 0.01, 0.02, 0.05, ... instead of 10^-2, 2x10^-2 (which overlap);
    only powers of ten over more than two decades; a few round values within one decade
    (where Matplotlib's log locator would label every hundred: 300 400 500 600 700 800)."""
    ax.set_xscale("log")
    if high < 5 * low:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    else:
        wide = high > 100 * low
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(subs="all"))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _activation_legend(fig: Figure, trials: Sequence[TrialRecord]) -> float:
    """The legend of the activation colours (and of hollow pruned trials), under the axes."""
    used = {t.activation for t in trials}
    present = [a for a in ACTIVATIONS if a in used]
    handles = [
        Line2D([], [], ls="", marker="o", color=COLORS.get(a, "black"), label=a) for a in present
    ]
    if any(t.state == TrialState.PRUNED for t in trials):
        handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="pruned (hollow)")
        )
    handles.insert(0, Line2D([], [], ls="", label="activation:"))
    return _legend_below(fig, handles, [h.get_label() for h in handles], ncols=len(handles))


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
    return f"\n({'; '.join(notes)})" if notes else ""
