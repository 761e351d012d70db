"""``mlpsearch rerun``: re-train a stored trial, check it reproduces, test it, export it.

1. The trial's stored engine config and the study's stored experiment (the same data), both
   read through :mod:`mlpsearch.trials`, are trained again with the stored seed, with BLAS
   held to the thread count of the study's workers. The validation error must
   equal the stored one exactly; if it does not, that is said loudly and the exit code is 1.
2. ``seeds=K`` re-trains with K fresh seeds (derived from the trial's seed) and reports the
   mean and standard deviation: is the configuration good, or was its seed lucky?
3. ``final=True`` trains on train + validation for the trial's best epoch count (the number
   of epochs chosen on validation, same schedule) and reports the test error of that model:
   the only place the test set is used.

Writes ``best.toml`` (or ``trial_<N>.toml``), a standalone experiment with every
hyperparameter fixed (the study's experiment with the trial's sampled values, and its training
seed as ``[train] seed``) that ``mlpsearch train`` runs without the study, and the re-trained
model at its best epoch, ``best_model.npz`` (``final_model.npz`` with ``final``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from mlpsearch import confirm
from mlpsearch.config import Confirm, Experiment, Fixed, Spec, StudyConfig
from mlpsearch.data import check_same_data, load_data
from mlpsearch.engine import MLP, EpochRecord, History, Model, TrainConfig, train
from mlpsearch.engine.data import Dataset
from mlpsearch.engine.files import write_atomic
from mlpsearch.errors import ConfigError
from mlpsearch.objective import engine_fingerprint
from mlpsearch.single import fit
from mlpsearch.space import layer_units
from mlpsearch.summary import FINAL_FILE, write_summary
from mlpsearch.threads import worker_threads
from mlpsearch.trials import TrialRecord, best, pick, records, stored_experiment


@dataclass
class RerunResult:
    trial: int
    stored: float  # the trial's stored best validation error
    got: float  # the re-run's
    reproduced: bool  # equal, and every epoch's validation error too
    threads: int
    files: dict[str, Path] = field(default_factory=dict)
    seed_errors: dict[int, float] = field(default_factory=dict)  # --seeds: seed -> error
    test_error: float | None = None  # --final
    final_train_error: float | None = None


def rerun(
    study: optuna.Study,
    folder: Path,
    *,
    trial: int | None = None,
    seeds: int = 0,
    final: bool = False,
    threads: int | None = None,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> RerunResult:
    """Re-train trial ``trial`` (default: the best) of ``study``; see the module docstring.

    ``threads``: BLAS threads (default: those of the worker that ran the trial).
    """
    from threadpoolctl import threadpool_limits

    t = pick(study, trial)
    exp = stored_experiment(study)
    config = t.config
    stored = t.best_val_error
    threads = threads or _threads_of(t, exp)
    data = load_data(exp)
    check_same_data(study, data, "re-run a trial of", record=False)
    is_best = _is_best(study, t)
    stem = "best" if is_best else f"trial_{t.number}"

    echo(
        f"trial {t.number} of {study.study_name} ({t.describe()}): stored validation error "
        f"{stored:.4%} at epoch {t.best_epoch}; re-training with seed "
        f"{config['train']['seed']} and {threads} BLAS thread(s) (the study's workers had "
        f"cpu_count {os.cpu_count()} // n_jobs {exp.study.n_jobs}; --threads changes it)"
    )
    with threadpool_limits(limits=threads):
        started = time.perf_counter()
        history, model = train_best(config, data)
        got = history.best_val_error
        same_curve = tuple(history.val_error) == t.curves.val_error
        result = RerunResult(t.number, stored, got, got == stored and same_curve, threads)
        seconds = time.perf_counter() - started
        if result.reproduced:
            echo(
                f"reproduced exactly: validation error {got:.4%} at epoch {history.best_epoch}, "
                f"every one of {len(history.records)} epochs identical ({seconds:.1f} s)"
            )
        else:
            warn(_not_reproduced(t, history, stored))

        found = confirm.estimates(records(study)).get(t.number)
        if found is not None and found.confirmed:
            echo(
                f"confirmed after the search on {found.n - 1} fresh seeds: validation error "
                f"{found.mean:.4%} ± {found.std:.4%} (sd over {found.n} seeds); optimism of "
                f"the search's seed {100 * found.optimism:+.2f} points"
            )

        files = result.files
        files["model"] = folder / f"{stem}_model.npz"
        Model.from_dataset(model, data).save(files["model"])  # with scaling and labels
        files["toml"] = folder / f"{stem}.toml"
        write_atomic(files["toml"], standalone_toml(study, t, exp))
        echo(f"saved the model at its best epoch to {files['model']}")
        echo(
            f"saved the configuration to {files['toml']}; run it with: mlpsearch train "
            f"{files['toml']}"
        )

        if seeds:
            result.seed_errors = seed_study(config, data, fresh_seeds(config, seeds), echo)
            errors = np.array(list(result.seed_errors.values()))
            std = errors.std(ddof=1) if len(errors) > 1 else float("nan")
            echo(
                f"{len(errors)} fresh seeds: validation error mean {errors.mean():.4%}, "
                f"std {std:.4%} (min {errors.min():.4%}, max {errors.max():.4%}); "
                f"stored seed: {stored:.4%}"
            )

        if final:
            epochs = t.best_epoch
            echo(
                f"final: training on train + validation ({len(data.y_train) + len(data.y_val)} "
                f"examples) for {epochs} epochs (the trial's best epoch), testing on "
                f"{len(data.y_test)} test examples"
            )
            final_history, final_model = train_final(config, data, epochs)
            last = final_history.records[-1]
            result.test_error, result.final_train_error = last.val_error, last.train_error
            files["final_model"] = folder / f"{'final' if is_best else stem + '_final'}_model.npz"
            Model.from_dataset(final_model, data).save(files["final_model"])
            echo(
                f"TEST ERROR {last.val_error:.4%} (accuracy {1 - last.val_error:.4%}); train "
                f"error {last.train_error:.4%}; model saved to {files['final_model']}"
            )
            if is_best:  # summary.json's best.test_error
                files["final"] = folder / FINAL_FILE
                record = {
                    "trial": t.number,
                    "test_error": last.val_error,
                    "train_error": last.train_error,
                    "epochs": epochs,
                }
                write_atomic(files["final"], json.dumps(record, indent=2) + "\n")
                write_summary(study, folder)
    return result


# --- choosing and describing -----------------------------------------------------------------


def _is_best(study: optuna.Study, t: TrialRecord) -> bool:
    top = best(study)
    return top is not None and top.number == t.number


def _threads_of(t: TrialRecord, exp: Experiment) -> int:
    """BLAS threads of the worker that ran ``t``: stored, or cpu_count // n_jobs as the runner."""
    return t.blas_threads or worker_threads(exp.study.n_jobs)


def _not_reproduced(t: TrialRecord, history: History, stored: float) -> str:
    old = t.curves.val_error
    new = history.val_error
    first = next(
        (i + 1 for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)) + 1,
    )
    bar = "!" * 78
    ran_on, now = t.engine, engine_fingerprint()
    engine_note = (
        f"!!! The engine's code has changed since the trial ran ({ran_on} -> {now}).\n"
        if ran_on and ran_on != now
        else ""
    )
    return (
        f"{bar}\n!!! NOT REPRODUCED: trial {t.number} stored validation error {stored!r}, "
        f"the re-run got {history.best_val_error!r}\n!!! the curves part at epoch {first} "
        f"({len(old)} epochs stored, {len(new)} re-run). Same seed and config, so something\n"
        "!!! else changed since the trial ran: the engine's code, the BLAS thread count, the\n"
        f"!!! numpy/BLAS build or the CPU (the trial ran on host {t.host}).\n"
        f"{engine_note}{bar}"
    )


# --- training --------------------------------------------------------------------------------


def train_best(config: dict[str, Any], data: Dataset) -> tuple[History, MLP]:
    """Train ``config`` as the study did; the history and the model at its best epoch."""
    model = MLP(**config["model"])
    kept: dict[str, Any] = {"error": math.inf, "model": None}

    def keep_best(record: EpochRecord) -> None:
        if record.val_error < kept["error"]:  # strict: the earliest best epoch, as History
            kept["error"], kept["model"] = record.val_error, model.clone()

    history = fit(model, config, data, keep_best)
    return history, kept["model"] or model


def train_final(config: dict[str, Any], data: Dataset, epochs: int) -> tuple[History, MLP]:
    """Train on train + validation, stopping after ``epochs``; the test part is evaluated.

    The configured epoch count stays as it is (a cosine or step schedule depends on it);
    training stops after ``epochs``, the trial's best epoch. No early stopping: that would be
    selection on the test set.
    """
    model = MLP(**config["model"])
    train_config = TrainConfig(**{**config["train"], "patience": None})
    history = train(
        model,
        np.concatenate([data.X_train, data.X_val]),
        np.concatenate([data.y_train, data.y_val]),
        data.X_test,
        data.y_test,
        train_config,
        callback=lambda r: r.epoch >= epochs,
    )
    return history, model


def fresh_seeds(config: dict[str, Any], k: int) -> list[int]:
    """``k`` seeds derived from the trial's seed (the same ``k`` seeds every time)."""
    state = np.random.SeedSequence([config["train"]["seed"], 1]).generate_state(k)
    return [int(s) for s in state]


def with_seed(config: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "model": {**config["model"], "seed": seed},
        "train": {**config["train"], "seed": seed},
    }


def seed_study(
    config: dict[str, Any], data: Dataset, seeds: list[int], echo: Callable[[str], None]
) -> dict[int, float]:
    """Best validation error of ``config`` trained with each seed in ``seeds``."""
    out = {}
    for i, seed in enumerate(seeds, start=1):
        history, _ = train_best(with_seed(config, seed), data)
        out[seed] = history.best_val_error
        echo(
            f"  seed {i}/{len(seeds)} ({seed}): validation error {history.best_val_error:.4%} "
            f"at epoch {history.best_epoch}"
        )
    return out


# --- the standalone experiment ---------------------------------------------------------------


def standalone_toml(study: optuna.Study, t: TrialRecord, exp: Experiment) -> str:
    """An experiment file with every hyperparameter of trial ``t`` fixed.

    ``mlpsearch train`` on it trains exactly the trial's config: same data, same seed.
    """
    which = "best" if _is_best(study, t) else f"trial{t.number}"
    fixed = standalone_experiment(t, exp, f"{study.study_name}_{which}")
    found = confirm.estimates(records(study)).get(t.number)
    seeds = ""
    if found is not None and found.confirmed:
        seeds = (
            f"# Over {found.n} seeds (the search's and {found.n - 1} fresh): validation error "
            f"{found.mean:.4%} ± {found.std:.4%} (sd); the search's single seed gave "
            f"{found.search_value:.4%}, optimism {100 * found.optimism:+.2f} points.\n"
        )
    header = (
        f"# Trial {t.number} of study {study.study_name}: validation error "
        f"{t.best_val_error!r} at epoch {t.best_epoch}.\n"
        f"{seeds}"
        "# Every hyperparameter is fixed; [train] seed is the trial's training seed.\n"
        "# Train it without the study:  mlpsearch train THIS_FILE\n"
    )
    return header + fixed.to_toml()


def standalone_experiment(t: TrialRecord, exp: Experiment, name: str) -> Experiment:
    """The study's experiment ``exp`` narrowed to trial ``t``: one trial, its sampled values
    fixed, its training seed as ``[train] seed``."""

    def fixed(key: str, spec: Spec) -> Fixed:
        if key in t.params:
            return Fixed(t.params[key])
        if not isinstance(spec, Fixed):
            raise ConfigError(
                f"trial {t.number} has no value of {key}, which the study's experiment searches"
            )
        return spec

    space: dict[str, Spec] = {
        key: fixed(key, spec)
        for key, spec in exp.space.items()
        if key != "units" and not key.startswith("units_")
    }
    for i in range(1, space["hidden_layers"].value + 1):  # units per layer, for its layers only
        space[f"units_{i}"] = fixed(f"units_{i}", layer_units(exp.space, i))
    study = StudyConfig(
        name=name,
        sampler="random",
        n_trials=1,
        n_jobs=1,
        seed=exp.study.seed,
        confirm=Confirm(top=0),  # one configuration, trained as it is
    )
    train = {**exp.train, "seed": t.config["train"]["seed"]}
    return Experiment(study, exp.data, train, space, source=exp.source)
