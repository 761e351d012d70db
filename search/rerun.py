"""``mlpsearch rerun``: re-train a stored trial, check it reproduces, test it, export it.

1. The trial's stored engine config (``user_attrs["config"]``) and the study's experiment
   (``study.user_attrs["experiment_toml"]``: the same data) are trained again with the stored
   seed, with BLAS held to the thread count of the study's workers. The validation error must
   equal the stored one exactly; if it does not, that is said loudly and the exit code is 1.
2. ``seeds=K`` re-trains with K fresh seeds (derived from the trial's seed) and reports the
   mean and standard deviation: is the configuration good, or was its seed lucky?
3. ``final=True`` trains on train + validation for the trial's best epoch count (the number
   of epochs chosen on validation, same schedule) and reports the test error of that model:
   the only place the test set is used.

Writes ``best.toml`` (or ``trial_<N>.toml``), a standalone experiment with every
hyperparameter fixed that ``mlpsearch train`` runs without the study, and the re-trained model
at its best epoch, ``best_model.npz`` (``final_model.npz`` with ``final``).
"""

from __future__ import annotations

import math
import os
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.engine import MLP, EpochRecord, History, TrainConfig, train
from mlpsearch.engine.data import Dataset
from mlpsearch.config import Experiment, dumps_toml, parse_experiment
from mlpsearch.errors import ConfigError
from mlpsearch.data import load_data
from mlpsearch.objective import engine_fingerprint
from mlpsearch.plots import describe
from mlpsearch.single import fit, fixed_config
from mlpsearch.threads import worker_threads


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

    t = pick_trial(study, trial)
    exp = study_experiment(study, folder)
    config = t.user_attrs["config"]
    stored = t.user_attrs["best_val_error"]
    threads = threads or trial_threads(t, exp)
    data = load_data(exp)
    best = _best_number(study) == t.number
    stem = "best" if best else f"trial_{t.number}"

    echo(
        f"trial {t.number} of {study.study_name} ({describe(t)}): stored validation error "
        f"{stored:.4%} at epoch {t.user_attrs.get('best_epoch')}; re-training with seed "
        f"{config['train']['seed']} and {threads} BLAS thread(s) (the study's workers had "
        f"cpu_count {os.cpu_count()} // n_jobs {exp.study.n_jobs}; --threads changes it)"
    )
    with threadpool_limits(limits=threads):
        started = time.perf_counter()
        history, model = train_best(config, data)
        got = history.best_val_error
        same_curve = history.val_error == t.user_attrs.get("curve_val_error")
        result = RerunResult(t.number, stored, got, got == stored and same_curve, threads)
        seconds = time.perf_counter() - started
        if result.reproduced:
            echo(
                f"reproduced exactly: validation error {got:.4%} at epoch {history.best_epoch}, "
                f"every one of {len(history.records)} epochs identical ({seconds:.1f} s)"
            )
        else:
            warn(_not_reproduced(t, history, stored))

        files = result.files
        files["model"] = folder / f"{stem}_model.npz"
        model.save(files["model"])
        files["toml"] = folder / f"{stem}.toml"
        files["toml"].write_text(standalone_toml(study, t, exp), encoding="utf-8")
        _check_round_trip(files["toml"], config, data)
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
            epochs = int(t.user_attrs["best_epoch"])
            echo(
                f"final: training on train + validation ({len(data.y_train) + len(data.y_val)} "
                f"examples) for {epochs} epochs (the trial's best epoch), testing on "
                f"{len(data.y_test)} test examples"
            )
            final_history, final_model = train_final(config, data, epochs)
            last = final_history.records[-1]
            result.test_error, result.final_train_error = last.val_error, last.train_error
            files["final_model"] = folder / f"{'final' if best else stem + '_final'}_model.npz"
            final_model.save(files["final_model"])
            echo(
                f"TEST ERROR {last.val_error:.4%} (accuracy {1 - last.val_error:.4%}); train "
                f"error {last.train_error:.4%}; model saved to {files['final_model']}"
            )
    return result


# --- choosing and describing -----------------------------------------------------------------


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number``, or the best complete trial; it must be complete, with a config."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        best = _best_number(study)
        if best is None:
            raise ConfigError(f"study {study.study_name!r} has no complete trial to re-run")
        number = best
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        known = f"0 to {max(by_number)}" if by_number else "none"
        raise ConfigError(
            f"trial {number} is not in study {study.study_name!r} (its trials: {known})"
        )
    t = by_number[number]
    if t.state != TrialState.COMPLETE:
        raise ConfigError(
            f"trial {number} is {t.state.name.lower()}; only complete trials can be re-run "
            "and compared with what they stored"
        )
    if "config" not in t.user_attrs or t.user_attrs.get("best_val_error") is None:
        raise ConfigError(f"trial {number} stored no config or validation error to re-run")
    return t


def study_experiment(study: optuna.Study, folder: Path) -> Experiment:
    """The experiment the study was created from (its data and training settings)."""
    text = study.user_attrs.get("experiment_toml")
    source = f"study {study.study_name} (stored experiment)"
    if text is None:
        path = folder / "experiment.toml"
        if not path.is_file():
            raise ConfigError(
                f"study {study.study_name!r} stores no experiment and {path} does not exist"
            )
        text, source = path.read_text(encoding="utf-8"), str(path)
    return parse_experiment(tomllib.loads(text), source=source)


def trial_threads(t: FrozenTrial, exp: Experiment) -> int:
    """BLAS threads of the worker that ran ``t``: stored, or the runner's share of the cores."""
    stored = t.user_attrs.get("blas_threads")
    if stored:
        return int(stored)
    return worker_threads(exp.study.n_jobs)


def _best_number(study: optuna.Study) -> int | None:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    return min(complete, key=lambda t: (t.value, t.number)).number if complete else None


def _not_reproduced(t: FrozenTrial, history: History, stored: float) -> str:
    old = t.user_attrs.get("curve_val_error") or []
    new = history.val_error
    first = next(
        (i + 1 for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)) + 1,
    )
    bar = "!" * 78
    ran_on, now = t.user_attrs.get("engine"), engine_fingerprint()
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
        f"!!! numpy/BLAS build or the CPU (the trial ran on host {t.user_attrs.get('host')}).\n"
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


def standalone_toml(study: optuna.Study, t: FrozenTrial, exp: Experiment) -> str:
    """An experiment file with every hyperparameter of trial ``t`` fixed.

    ``mlpsearch train`` on it trains exactly the trial's config: same data, same seed.
    """
    config = t.user_attrs["config"]
    model, tr = config["model"], config["train"]
    units = model["layer_sizes"][1:-1]
    is_best = _best_number(study) == t.number
    sections = {
        "study": {
            "name": f"{study.study_name}_{'best' if is_best else f'trial{t.number}'}",
            "sampler": "random",
            "n_trials": 1,
            "n_jobs": 1,
            "seed": int(tr["seed"]),
        },
        "data": {k: v for k, v in exp.data.__dict__.items() if v is not None},
        "train": {
            "epochs": tr["epochs"],
            "patience": tr["patience"] or 0,
            "step_size": tr["step_size"],
            "gamma": tr["gamma"],
        },
        "space": {
            "hidden_layers": len(units),
            **{f"units_{i}": u for i, u in enumerate(units, start=1)},
            "activation": model["activation"],
            "init": model["init"],
            "init_scale": model["init_scale"],
            "bias_init": model["bias_init"],
            "learning_rate": tr["learning_rate"],
            "batch_size": tr["batch_size"],
            "optimizer": tr["optimizer"],
            "momentum": tr["momentum"],
            "weight_decay": tr["weight_decay"],
            "dropout": tr["dropout"],
            "schedule": tr["schedule"],
        },
    }
    header = (
        f"# Trial {t.number} of study {study.study_name}: validation error "
        f"{t.user_attrs['best_val_error']!r} at epoch {t.user_attrs.get('best_epoch')}.\n"
        "# Every hyperparameter is fixed; [study] seed is the trial's training seed.\n"
        "# Train it without the study:  mlpsearch train THIS_FILE\n"
    )
    return header + dumps_toml(sections)


def _check_round_trip(path: Path, config: dict[str, Any], data: Dataset) -> None:
    """The written file must describe exactly the stored config (else it is a bug here)."""
    exp = parse_experiment(tomllib.loads(path.read_text(encoding="utf-8")), source=str(path))
    again = fixed_config(exp, data, exp.study.seed)
    if again != config:
        changed = sorted(
            f"{part}.{k}"
            for part in ("model", "train")
            for k in {*config[part], *again[part]}
            if config[part].get(k) != again[part].get(k)
        )
        raise RuntimeError(f"{path} does not reproduce the trial's config: {', '.join(changed)}")
