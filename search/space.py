"""The search space: drawing configurations and turning them into engine settings.

Hyperparameter names double as Optuna parameter names. Units are chosen per hidden layer, as
``units_1`` ... ``units_<hidden_layers>``, each from ``units`` unless ``units_<i>`` overrides it.

Random and grid configurations are drawn here, in the parent process, as a function of the
study seed and the trial's slot (its index in the study) alone, then enqueued; so the set of
configurations does not depend on how many workers run them (QMC too: see
:mod:`mlpsearch.samplers`). TPE samples in the workers through :func:`suggest`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from mlpsearch.config import OFF, Choice, Experiment, Fixed, Range, Spec, layer_units
from mlpsearch.engine.hyperparameters import RULES


def slot_seed(study_seed: int, slot: int) -> int:
    """The training seed of trial slot ``slot``: one stream per slot of the study seed."""
    return int(np.random.SeedSequence([study_seed, slot]).generate_state(1)[0])


# --- drawing in the parent -------------------------------------------------------------------


def draw_random(exp: Experiment, slot: int) -> dict[str, Any]:
    """The searched parameters of slot ``slot`` of a random search."""
    rng = np.random.default_rng(np.random.SeedSequence([exp.study.seed, slot, 1]))
    params: dict[str, Any] = {}
    for name, spec in _ordered(exp.space):
        if name == "units" or name.startswith("units_"):
            continue
        if not isinstance(spec, Fixed):
            params[name] = _draw(spec, rng)
    n_layers = _value(params, exp.space, "hidden_layers")
    for i in range(1, n_layers + 1):
        spec = layer_units(exp.space, i)
        if not isinstance(spec, Fixed):
            params[f"units_{i}"] = _draw(spec, rng)
    return params


def grid(exp: Experiment) -> list[dict[str, Any]]:
    """Every configuration of a grid search, in a seeded shuffled order."""
    flat = {
        name: spec.grid_values()
        for name, spec in _ordered(exp.space)
        if not isinstance(spec, Fixed) and not name.startswith("units")
    }
    configs = []
    for combo in itertools.product(*flat.values()):
        params = dict(zip(flat, combo, strict=True))
        n_layers = _value(params, exp.space, "hidden_layers")
        layers = {
            f"units_{i}": layer_units(exp.space, i).grid_values()
            for i in range(1, n_layers + 1)
            if not isinstance(layer_units(exp.space, i), Fixed)
        }
        for units in itertools.product(*layers.values()):
            configs.append({**params, **dict(zip(layers, units, strict=True))})
    order = np.random.default_rng(np.random.SeedSequence([exp.study.seed, 2])).permutation(
        len(configs)
    )
    return [configs[i] for i in order]


def _ordered(space: dict[str, Spec]) -> list[tuple[str, Spec]]:
    return sorted(space.items())


def _value(params: dict[str, Any], space: dict[str, Spec], name: str) -> Any:
    """The drawn value of ``name``, or its fixed value when it is not searched."""
    spec = space[name]
    return spec.value if isinstance(spec, Fixed) else params[name]


def _draw(spec: Spec, rng: np.random.Generator) -> Any:
    if isinstance(spec, Choice):
        return spec.values[int(rng.integers(len(spec.values)))]
    assert isinstance(spec, Range)
    if spec.is_int:
        if spec.log:
            value = math.exp(rng.uniform(math.log(spec.low - 0.5), math.log(spec.high + 0.5)))
            return int(min(max(round(value), spec.low), spec.high))
        step = int(spec.step or 1)
        return int(spec.low) + step * int(
            rng.integers((int(spec.high) - int(spec.low)) // step + 1)
        )
    if spec.log:
        return float(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))))
    if spec.step is not None:
        n = int(math.floor((spec.high - spec.low) / spec.step + 1e-9))
        return float(spec.low + spec.step * int(rng.integers(n + 1)))
    return float(rng.uniform(spec.low, spec.high))


# --- suggesting in the worker ----------------------------------------------------------------


def suggest(trial: Any, space: dict[str, Spec]) -> dict[str, Any]:
    """All hyperparameter values of ``trial`` (an ``optuna.Trial``), searched and fixed.

    Enqueued trials return their enqueued values; others are sampled by the study's sampler.
    """
    values: dict[str, Any] = {}
    for name, spec in _ordered(space):
        if name == "units" or name.startswith("units_"):
            continue
        values[name] = _suggest_one(trial, name, spec)
    values["units"] = [
        _suggest_one(trial, f"units_{i}", layer_units(space, i))
        for i in range(1, values["hidden_layers"] + 1)
    ]
    return values


def distributions(exp: Experiment, params: dict[str, Any]) -> dict[str, Any]:
    """The Optuna distribution of each of ``params`` (drawn here), as :func:`suggest` declares
    it: a trial created with them already holds its parameters, so suggesting writes nothing."""
    import optuna.distributions as od

    out = {}
    for name in params:
        spec = layer_units(exp.space, int(name[6:])) if name.startswith("units_") else None
        spec = spec or exp.space[name]
        if isinstance(spec, Choice):
            out[name] = od.CategoricalDistribution(list(spec.values))
        elif spec.is_int:
            step = int(spec.step or 1)
            out[name] = od.IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=step)
        else:
            out[name] = od.FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return out


def _suggest_one(trial: Any, name: str, spec: Spec) -> Any:
    if isinstance(spec, Fixed):
        return spec.value
    if isinstance(spec, Choice):
        return trial.suggest_categorical(name, list(spec.values))
    if spec.is_int:
        step = int(spec.step or 1)
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)


def trial_config(
    exp: Experiment, values: dict[str, Any], seed: int, n_in: int, n_out: int
) -> dict[str, Any]:
    """The engine settings of one trial: ``{"model": MLP kwargs, "train": TrainConfig kwargs}``.

    ``values`` is what :func:`suggest` returned; ``n_in`` and ``n_out`` are the dataset's
    input and output sizes; ``seed`` seeds both the initial weights and the training. Each value
    goes to the part of the engine its rule names (``engine.hyperparameters.RULES``);
    ``hidden_layers`` and ``units`` make ``layer_sizes``. The result is JSON-able and is stored
    on the trial, so a trial can be re-run from the storage alone.
    """
    config: dict[str, dict[str, Any]] = {
        "model": {"layer_sizes": [n_in, *values["units"], n_out], "dtype": "float32"},
        "train": {},
    }
    settings = {k: v for k, v in exp.train.items() if k != "seed"}  # the seed is ``seed``
    for name, value in {**values, **settings}.items():
        rule = RULES[name]
        if name not in ("hidden_layers", "units"):
            config[rule.part][name] = None if rule.optional and value == OFF else value
    for part in config.values():
        part["seed"] = seed
    return config
