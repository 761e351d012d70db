"""The report's plots are made for comparing: error axes fit the errors shown, pruned trials
and every hyperparameter are in the hyperparameter plots, confirmed configurations are drawn
and come first, legends stay off the data, and every figure has one width.

The study is built in memory from the tiny study's trials, shaped like the Fashion-MNIST study
(good trials a point apart near 9%, most trials pruned, a diverged one, two configurations
confirmed on fresh seeds), so each property can be checked on known numbers.
"""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import optuna
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from optuna.trial import TrialState

from mlpsearch import confirm
from mlpsearch.plots import PLOTS, WIDTH, _error_axis, figure
from mlpsearch.trials import records

GOOD = [0.089 + 0.001 * i for i in range(12)]  # complete trials 0 to 11
DIVERGED = 0.9  # trial 12
PRUNED = [0.12 + 0.002 * i for i in range(20)]  # trials 13 to 32, errors when stopped
# fresh-seed values: trial 1 (search 9.0%) confirms at 9.4% on average, trial 0 (8.9%) at 9.63%
CONFIRMATIONS = {0: (0.099, 0.101), 1: (0.095, 0.097)}
VAL_ROWS = 12_000


@pytest.fixture
def study(tiny_study, load_study) -> optuna.Study:
    templates = load_study(tiny_study).get_trials(states=(TrialState.COMPLETE,))
    made = optuna.create_study(study_name="shaped")

    def add(i: int, state: TrialState, value: float, **attrs: object) -> None:
        t = templates[i % len(templates)]
        user = dict(t.user_attrs) | {
            "val_rows": VAL_ROWS,
            "best_val_error": value,
            "val_error": value,
            "best_train_error": value - 0.04,
            "dead_fraction": [0.02 * (i % 5)],  # at most 8% dead
            **attrs,
        }
        made.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=t.params,
                distributions=t.distributions,
                user_attrs=user,
            )
        )

    for i, v in enumerate([*GOOD, DIVERGED]):
        add(i, TrialState.COMPLETE, v)
    for i, v in enumerate(PRUNED, start=len(GOOD) + 1):
        add(i, TrialState.PRUNED, v, prune_reason="pruned at epoch 2")
    for of, values in CONFIRMATIONS.items():
        for k, v in enumerate(values, start=1):
            add(of, TrialState.COMPLETE, v, confirm_of=of, confirm_seed=k, seed=1000 + k)
    return made


def drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def hollow(collection: PathCollection) -> bool:
    faces = collection.get_facecolor()
    return len(faces) == 0 or bool(np.all(np.asarray(faces)[:, 3] == 0))


def test_error_axes_fit_the_errors_instead_of_starting_at_zero(study):
    ax = figure(study, "history").axes[0]
    bottom, top = ax.get_ylim()
    se = (GOOD[0] * (1 - GOOD[0]) / VAL_ROWS) ** 0.5
    assert GOOD[0] - 3 * se < bottom < GOOD[0] - se  # the best trial's error bar is whole
    assert max(PRUNED) < top < 0.2  # the diverged trial does not stretch it ...
    labels = ax.get_legend_handles_labels()[1]
    assert "1 above the axis (up to 90.0%)" in labels  # ... it is counted on its top edge
    params = figure(study, "params")
    for ax in params.axes:
        if ax.get_visible():
            assert ax.get_ylim()[0] == pytest.approx(bottom) and ax.get_ylim()[1] == top


def test_errors_at_zero_are_drawn_whole_and_no_tick_says_below_zero():
    fig = Figure()
    ax = fig.add_subplot()
    top = _error_axis(ax, np.array([0.0, 0.0, 0.004, 0.01, 0.02, 0.03]))
    bottom, _ = ax.get_ylim()
    assert bottom < 0.0  # a margin below 0%: markers there are not cut in half
    assert top == pytest.approx(0.03 + 0.002)  # the smallest pad: 0.2 points
    drawn(fig)
    labels = {tick: label.get_text() for tick, label in zip(
        ax.get_yticks(), ax.get_yticklabels(), strict=True
    )}  # fmt: skip
    assert all(text == "" for tick, text in labels.items() if tick < 0)
    assert labels[0.0] == "0%"


def test_pruned_trials_are_in_the_hyperparameter_plot_hollow_at_their_error(study):
    fig = figure(study, "params")
    ax = next(a for a in fig.axes if a.get_xlabel().startswith("learning_rate"))
    trials = records(study)
    pruned = {
        (t.params["learning_rate"], t.val_error) for t in trials if t.state == TrialState.PRUNED
    }
    shown = {
        tuple(map(float, xy))
        for c in ax.collections
        if isinstance(c, PathCollection) and hollow(c)
        for xy in c.get_offsets()
    }
    assert len(pruned) == len(PRUNED)
    assert {(round(x, 9), round(y, 9)) for x, y in shown} == {
        (round(x, 9), round(y, 9)) for x, y in pruned
    }
    bottom, top = ax.get_ylim()
    assert all(bottom < y < top for _, y in pruned)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "pruned (hollow)" in labels


def test_every_searched_hyperparameter_has_a_panel_categorical_ones_too(study):
    fig = figure(study, "params")
    searched = {k for t in study.trials for k in t.params}
    labels = {a.get_xlabel().split(" (")[0] for a in fig.axes if a.get_visible()}
    assert labels == searched
    ax = next(a for a in fig.axes if a.get_xlabel() == "activation")
    choices = study.trials[0].distributions["activation"].choices
    assert [t.get_text() for t in ax.get_xticklabels()] == list(choices)
    # points of one choice are spread sideways (not on one line), within their column
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if len(c.get_offsets())])
    assert len(set(np.round(xs, 6))) > len(choices)
    assert np.all(np.abs(xs - np.round(xs)) <= 0.3 + 1e-9)


def test_curves_come_in_the_order_of_the_top_table_with_the_confirmed_mean(study):
    winner = confirm.best(records(study))
    assert winner.trial == 1  # 9.4% over 3 seeds beats trial 0's 9.63%
    titles = [a.get_title() for a in figure(study, "curves").axes if a.get_visible()]
    assert titles[0].startswith("trial 1: val 9.00%; 3 seeds: 9.40% ± ")
    assert titles[1].startswith("trial 0: val 8.90%; 3 seeds: 9.63% ± ")
    assert titles[2].startswith("trial 2: val 9.10%\n")  # then the unconfirmed, by value


def test_history_draws_each_confirmed_configuration_beside_its_search_trial(study):
    ax = figure(study, "history").axes[0]
    labels = ax.get_legend_handles_labels()[1]
    sd = np.std([GOOD[1], *CONFIRMATIONS[1]], ddof=1)
    assert f"confirmed best, trial 1: 9.40% ± {sd:.2%} over 3 seeds" in labels
    assert "confirmed on fresh seeds (mean ± sd)" in labels
    assert "best so far (8.90%, one seed)" in labels
    # every complete trial's error bar is its binomial standard error
    bars = next(c for c in ax.containers if c.get_label().startswith("complete trial"))
    segments = bars.lines[2][0].get_segments()
    half = sorted(round((seg[1][1] - seg[0][1]) / 2, 9) for seg in segments)
    values = [*GOOD, DIVERGED]
    assert half == sorted(round((v * (1 - v) / VAL_ROWS) ** 0.5, 9) for v in values)
    # and a confirmed configuration's bar is its sd over the seeds
    best = next(c for c in ax.containers if c.get_label().startswith("confirmed best"))
    (segment,) = best.lines[2][0].get_segments()
    assert (segment[1][1] - segment[0][1]) / 2 == pytest.approx(sd)


@pytest.mark.parametrize("name", ["gap", "history", "curves", "params", "dead_units"])
def test_legends_sit_under_the_axes_never_on_the_data(study, name):
    fig = figure(study, name)
    renderer = drawn(fig)
    assert len(fig.legends) == 1 and not any(a.get_legend() for a in fig.axes)
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_visible():
            assert legend.y1 <= ax.get_tightbbox(renderer).y0 + 1, ax.get_xlabel()
    assert legend.y0 >= 0 and legend.x0 >= 0 and legend.x1 <= fig.bbox.width


def test_dead_units_axis_fits_the_fractions_and_pruned_trials_are_hollow(study):
    fig = figure(study, "dead_units")
    for ax in fig.axes:
        assert 0.08 <= ax.get_ylim()[1] < 0.12  # at most 8% dead: not a 0-100% axis
        assert any(hollow(c) for c in ax.collections)


def test_every_plot_has_one_width_and_one_style(study):
    for name in PLOTS:
        fig = figure(study, name)
        assert fig.get_figwidth() == WIDTH, name
        for ax in fig.axes:
            assert ax.get_axisbelow() is True, name  # grid lines behind the points
    bars = figure(study, "importances").axes[0].patches
    assert bars and all(
        matplotlib.colors.to_hex(b.get_facecolor()) == "#d62728" for b in bars
    )  # the validation colour of every other figure
