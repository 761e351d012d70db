"""Experiment files: TOML read with ``tomllib`` and validated into frozen dataclasses.

An experiment file has four sections::

    [study]   name, sampler, n_trials, n_jobs, seed, pruner, storage,
              confirm = { top = 5, seeds = 3 }
    [data]    dataset, data_dir, val_fraction, scale, label_column, seed
    [train]   epochs, batch_size, optimizer, learning_rate, schedule, patience, weight_decay, ...
    [space]   one entry per hyperparameter: a range table, a choice list, or a fixed value

Every mistake is reported as a :class:`ConfigError` whose one-line message names the key path,
the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpsearch.errors import ConfigError
from mlpsearch.engine import ACTIVATIONS, INITIALIZERS, OPTIMIZERS, SCHEDULES

SAMPLERS = ("random", "grid", "tpe", "qmc")
PRUNERS = ("none", "median", "hyperband")
SCALES = ("unit", "standard")
MAX_HIDDEN_LAYERS = 8


# --- the search space ------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A numeric range ``[low, high]``; integers when both ends and ``step`` are integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Choice:
    """A categorical choice between listed values."""

    values: tuple[Any, ...]

    def to_toml(self) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched."""

    value: Any

    def to_toml(self) -> Any:
        return self.value


Spec = Range | Choice | Fixed

# name -> (kind of value, default when absent from [space] and [train]).
# "model" entries go to engine.MLP, "train" entries to engine.TrainConfig.
HYPERPARAMETERS: dict[str, tuple[str, type, Any]] = {
    "hidden_layers": ("model", int, 1),
    "units": ("model", int, 64),
    "activation": ("model", str, "relu"),
    "init": ("model", str, "he"),
    "init_scale": ("model", float, 1.0),
    "bias_init": ("model", float, 0.0),
    "learning_rate": ("train", float, 0.05),
    "batch_size": ("train", int, 64),
    "optimizer": ("train", str, "momentum"),
    "momentum": ("train", float, 0.9),
    "weight_decay": ("train", float, 0.0),
    "dropout": ("train", float, 0.0),
    "schedule": ("train", str, "constant"),
}
CHOICES = {
    "activation": tuple(ACTIVATIONS),
    "init": tuple(INITIALIZERS),
    "optimizer": tuple(OPTIMIZERS),
    "schedule": tuple(SCHEDULES),
}
# Bounds every value must respect: (low, high, low inclusive?).
BOUNDS = {
    "hidden_layers": (1, MAX_HIDDEN_LAYERS, True),
    "units": (1, 65536, True),
    "init_scale": (0.0, math.inf, False),
    "bias_init": (-math.inf, math.inf, True),
    "learning_rate": (0.0, math.inf, False),
    "batch_size": (1, 1_000_000, True),
    "momentum": (0.0, 1.0, True),
    "weight_decay": (0.0, math.inf, True),
    "dropout": (0.0, 0.95, True),
}
# Settings of [train] that are never searched (a default of None: absent unless given).
TRAIN_ONLY = {
    "epochs": (int, 20),
    "patience": (int, 0),
    "step_size": (int, 10),
    "gamma": (float, 0.1),
    "seed": (int, None),  # the training seed of a standalone experiment (rerun's best.toml)
}


@dataclass(frozen=True)
class Confirm:
    """``[study] confirm``: after the search, re-train the ``top`` best configurations with
    ``seeds`` fresh seeds each (``mlpsearch.confirm``); ``top = 0`` turns it off."""

    top: int = 5
    seeds: int = 3

    LIMITS = {"top": (0, 100), "seeds": (0, 50)}  # inclusive

    @property
    def on(self) -> bool:
        return self.top > 0 and self.seeds > 0

    def to_toml(self) -> dict[str, int]:
        return {"top": self.top, "seeds": self.seeds}


@dataclass(frozen=True)
class StudyConfig:
    name: str = "study"
    sampler: str = "random"
    n_trials: int = 20
    n_jobs: int = 2
    seed: int = 0
    pruner: str = "none"
    storage: str | None = None
    confirm: Confirm = Confirm()


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.2
    scale: str = "unit"
    label_column: str = "label"
    seed: int = 0  # of the validation split (and of the held-out test part of users' data)


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: where trials come from and how each one trains."""

    study: StudyConfig
    data: DataConfig
    train: dict[str, Any]  # fixed training settings (epochs, patience, ... and unsearched values)
    space: dict[str, Spec]  # every hyperparameter, searched or fixed
    source: str = field(default="<memory>", compare=False)

    @property
    def searched(self) -> dict[str, Spec]:
        return {k: v for k, v in self.space.items() if not isinstance(v, Fixed)}

    def replace_study(self, **changes: Any) -> Experiment:
        """A copy with ``[study]`` settings changed (``None`` leaves a setting as it is)."""
        fields = {**self.study.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        study = _build_study({k: v for k, v in fields.items() if v is not None})
        _check_grid(study, self.space)
        return Experiment(study, self.data, self.train, self.space, source=self.source)

    def without_storage(self) -> Experiment:
        study = dataclasses.replace(self.study, storage=None)
        return Experiment(study, self.data, self.train, self.space, source=self.source)

    def to_toml(self) -> str:
        """The experiment as a TOML document that :func:`parse_experiment` reads back."""
        sections = {
            "study": {
                k: v.to_toml() if isinstance(v, Confirm) else v
                for k, v in self.study.__dict__.items()
                if v is not None
            },
            "data": {k: v for k, v in self.data.__dict__.items() if v is not None},
            "train": dict(self.train),
            "space": {k: v.to_toml() for k, v in self.space.items()},
        }
        return dumps_toml(sections)


# --- parsing ---------------------------------------------------------------------------------


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    try:
        return parse_experiment(doc, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def parse_experiment(doc: dict[str, Any], source: str = "<memory>") -> Experiment:
    """Validate a parsed TOML document into an :class:`Experiment`."""
    _check_keys(doc, ("study", "data", "train", "space"), "")
    for section in ("study", "data", "train", "space"):
        if not isinstance(doc.get(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table")
    study = _build_study(doc.get("study", {}))
    data = _build_data(doc.get("data", {}))
    train, space = _build_train_and_space(doc.get("train", {}), doc.get("space", {}))
    _check_grid(study, space)
    return Experiment(study, data, train, space, source=source)


def _check_grid(study: StudyConfig, space: dict[str, Spec]) -> None:
    if study.sampler != "grid":
        return
    for name, spec in space.items():
        if isinstance(spec, Range) and not (spec.is_int and spec.step is not None):
            raise ConfigError(
                f"space.{name}: the grid sampler needs a choice list or an integer range "
                f"with a step, got {spec.to_toml()}"
            )


def _build_study(d: dict[str, Any]) -> StudyConfig:
    _check_keys(d, StudyConfig.__dataclass_fields__, "study.")
    out = StudyConfig(
        name=_typed(d, "name", str, StudyConfig.name, "study."),
        sampler=_typed(d, "sampler", str, StudyConfig.sampler, "study."),
        n_trials=_typed(d, "n_trials", int, StudyConfig.n_trials, "study."),
        n_jobs=_typed(d, "n_jobs", int, StudyConfig.n_jobs, "study."),
        seed=_typed(d, "seed", int, StudyConfig.seed, "study."),
        pruner=_typed(d, "pruner", str, StudyConfig.pruner, "study."),
        storage=_typed(d, "storage", str, None, "study."),
        confirm=_build_confirm(d.get("confirm", Confirm())),
    )
    _check_name(out.name)
    _check_choice("study.sampler", out.sampler, SAMPLERS)
    _check_choice("study.pruner", out.pruner, PRUNERS)
    if not 1 <= out.n_trials <= 100_000:
        raise ConfigError(f"study.n_trials: {out.n_trials} is out of range; allowed: 1 to 100000")
    if not 1 <= out.n_jobs <= 64:
        raise ConfigError(f"study.n_jobs: {out.n_jobs} is out of range; allowed: 1 to 64")
    if not 0 <= out.seed < 2**32:
        raise ConfigError(f"study.seed: {out.seed} is out of range; allowed: 0 to 2**32 - 1")
    return out


def _build_confirm(raw: Any) -> Confirm:
    if isinstance(raw, Confirm):  # replace_study, --confirm-top: checked like the file's
        raw = raw.to_toml()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"study.confirm: {raw!r} is not a table; write e.g. confirm = {{ top = 5, seeds = 3 }}"
        )
    _check_keys(raw, Confirm.LIMITS, "study.confirm.")
    out = Confirm(
        top=_typed(raw, "top", int, Confirm.top, "study.confirm."),
        seeds=_typed(raw, "seeds", int, Confirm.seeds, "study.confirm."),
    )
    for key, (low, high) in Confirm.LIMITS.items():
        value = getattr(out, key)
        if not low <= value <= high:
            raise ConfigError(
                f"study.confirm.{key}: {value} is out of range; allowed: {low} to {high}"
            )
    return out


def _check_name(name: str) -> None:
    ok = name and len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name)
    if not ok or name.startswith("."):
        raise ConfigError(
            f"study.name: {name!r} is not a valid study name; "
            "allowed: letters, digits, '-', '_' and '.', at most 100 characters"
        )


def _build_data(d: dict[str, Any]) -> DataConfig:
    _check_keys(d, DataConfig.__dataclass_fields__, "data.")
    out = DataConfig(
        dataset=_typed(d, "dataset", str, DataConfig.dataset, "data."),
        data_dir=_typed(d, "data_dir", str, None, "data."),
        val_fraction=_typed(d, "val_fraction", float, DataConfig.val_fraction, "data."),
        scale=_typed(d, "scale", str, DataConfig.scale, "data."),
        label_column=_typed(d, "label_column", str, DataConfig.label_column, "data."),
        seed=_typed(d, "seed", int, DataConfig.seed, "data."),
    )
    if not 0.0 < out.val_fraction < 1.0:
        raise ConfigError(
            f"data.val_fraction: {out.val_fraction} is out of range; allowed: 0 < value < 1"
        )
    _check_choice("data.scale", out.scale, SCALES)
    if not out.dataset:
        raise ConfigError("data.dataset: must not be empty")
    return out


def _build_train_and_space(
    train_doc: dict[str, Any], space_doc: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Spec]]:
    _check_keys(train_doc, {*TRAIN_ONLY, *HYPERPARAMETERS} - {"units", "hidden_layers"}, "train.")
    max_layers = MAX_HIDDEN_LAYERS
    per_layer = [f"units_{i}" for i in range(1, max_layers + 1)]
    _check_keys(space_doc, [*HYPERPARAMETERS, *per_layer], "space.")

    train: dict[str, Any] = {}
    for key, (typ, default) in TRAIN_ONLY.items():
        value = _typed(train_doc, key, typ, default, "train.")
        if value is not None:
            train[key] = value
    if not 1 <= train["epochs"] <= 100_000:
        raise ConfigError(f"train.epochs: {train['epochs']} is out of range; allowed: 1 to 100000")
    if train["patience"] < 0:
        raise ConfigError(f"train.patience: {train['patience']} must be >= 0 (0 turns it off)")
    if train["step_size"] < 1:
        raise ConfigError(f"train.step_size: {train['step_size']} must be >= 1")
    if not 0.0 < train["gamma"] <= 1.0:
        raise ConfigError(
            f"train.gamma: {train['gamma']} is out of range; allowed: 0 < gamma <= 1"
        )
    if train.get("seed", 0) < 0:
        raise ConfigError(f"train.seed: {train['seed']} must be >= 0")

    space: dict[str, Spec] = {}
    for name, (_, typ, default) in HYPERPARAMETERS.items():
        if name in train_doc and name in space_doc:
            raise ConfigError(
                f"space.{name}: also set in [train]; set a hyperparameter in one place only"
            )
        if name in train_doc:
            space[name] = Fixed(_typed(train_doc, name, typ, default, "train."))
            _check_value(f"train.{name}", name, space[name].value)
        elif name in space_doc:
            space[name] = _parse_spec(f"space.{name}", name, typ, space_doc[name])
        else:
            space[name] = Fixed(default)
    for i, key in enumerate(per_layer, start=1):
        if key in space_doc:
            space[key] = _parse_spec(f"space.{key}", "units", int, space_doc[key])
            top = _spec_max(space["hidden_layers"])
            if i > top:
                raise ConfigError(
                    f"space.{key}: layer {i} does not exist; hidden_layers is at most {top}"
                )
    return train, space


def _spec_max(spec: Spec) -> Any:
    if isinstance(spec, Range):
        return spec.high
    if isinstance(spec, Choice):
        return max(spec.values)
    return spec.value


def _parse_spec(path: str, name: str, typ: type, raw: Any) -> Spec:
    if isinstance(raw, dict):
        _check_keys(raw, ("low", "high", "log", "step"), path + ".")
        if "low" not in raw or "high" not in raw:
            raise ConfigError(f"{path}: a range needs both 'low' and 'high', got {raw}")
        if typ is str:
            raise ConfigError(f"{path}: is categorical; give a list of choices, not a range")
        low = _number(f"{path}.low", raw["low"], typ)
        high = _number(f"{path}.high", raw["high"], typ)
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{path}.log: {log!r} is not true or false")
        step = raw.get("step")
        if step is not None:
            step = _number(f"{path}.step", step, typ)
            if step <= 0:
                raise ConfigError(f"{path}.step: {step} must be > 0")
            if log:
                raise ConfigError(f"{path}: 'step' and 'log' cannot be combined")
        if typ is int:
            low, high = int(low), int(high)
            step = None if step is None else int(step)
        if low > high:
            raise ConfigError(f"{path}: inverted range, low {low} > high {high}")
        if low == high:
            raise ConfigError(f"{path}: empty range, low == high == {low}; use a fixed value")
        if log and low <= 0:
            raise ConfigError(f"{path}: a log range must stay above 0, got low = {low}")
        _check_value(f"{path}.low", name, low)
        _check_value(f"{path}.high", name, high)
        return Range(low, high, log, step)
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{path}: the choice list is empty")
        values = tuple(_scalar(f"{path}[{i}]", v, typ) for i, v in enumerate(raw))
        if len(set(values)) != len(values):
            raise ConfigError(f"{path}: the choice list {list(raw)} repeats a value")
        for i, v in enumerate(values):
            _check_value(f"{path}[{i}]", name, v)
        return Choice(values)
    value = _scalar(path, raw, typ)
    _check_value(path, name, value)
    return Fixed(value)


def _scalar(path: str, v: Any, typ: type) -> Any:
    if typ is str:
        if not isinstance(v, str):
            raise ConfigError(f"{path}: {v!r} is not a string")
        return v
    return _number(path, v, typ)


def _number(path: str, v: Any, typ: type) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{path}: {v!r} is not a number")
    if typ is int and not isinstance(v, int):
        raise ConfigError(f"{path}: {v!r} is not an integer")
    if not math.isfinite(v):
        raise ConfigError(f"{path}: {v!r} is not a finite number")
    return typ(v) if typ is float else v


def _check_value(path: str, name: str, value: Any) -> None:
    if name in CHOICES:
        _check_choice(path, value, CHOICES[name])
    if name in BOUNDS:
        low, high, closed = BOUNDS[name]
        inside = (low <= value if closed else low < value) and value <= high
        if not inside:
            lo = f"{low} <=" if closed else f"{low} <"
            raise ConfigError(f"{path}: {value} is out of range; allowed: {lo} value <= {high}")


def _check_choice(path: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        hint = _did_you_mean(str(value), [str(a) for a in allowed])
        raise ConfigError(f"{path}: {value!r} is not allowed{hint}; allowed: {', '.join(allowed)}")


def _check_keys(d: dict[str, Any], allowed: Any, prefix: str) -> None:
    for key in d:
        if key not in allowed:
            hint = _did_you_mean(key, list(allowed))
            where = f"{prefix}{key}" if prefix else f"[{key}]"
            raise ConfigError(f"{where}: unknown key{hint}; allowed: {', '.join(allowed)}")


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _typed(d: dict[str, Any], key: str, typ: type, default: Any, prefix: str) -> Any:
    if key not in d:
        return default
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, typ):
        raise ConfigError(f"{prefix}{key}: {v!r} is not {_TYPE_NAMES[typ]}")
    if typ is float and not math.isfinite(v):
        raise ConfigError(f"{prefix}{key}: {v!r} is not a finite number")
    return v


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


# --- writing ---------------------------------------------------------------------------------


def dumps_toml(sections: dict[str, dict[str, Any]]) -> str:
    """A minimal TOML writer for the flat sections of an experiment file."""
    lines: list[str] = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")
