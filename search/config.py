"""Experiment files: TOML read with ``tomllib``, validated into frozen dataclasses, written
with ``tomli-w``.

An experiment file has four sections::

    [study]   name, sampler, n_trials, n_jobs, seed, pruner, storage,
              confirm = { top = 5, seeds = 3 }
    [data]    dataset, data_dir, val_fraction, scale, label_column, seed
    [train]   settings fixed once (epochs, patience, step_size, gamma, seed) and any
              hyperparameter you want fixed
    [space]   one entry per hyperparameter: a range table, a choice list, or a fixed value

Hyperparameters and ``[train]`` settings belong to the engine: their types, bounds, choices,
defaults and the part of the engine that takes them (model or training) are declared once in
``mlpsearch.engine.hyperparameters.RULES``, and every value here is checked by the rule the
engine checks, so the two cannot disagree. Study and data settings are declared here.

Every mistake is reported as a :class:`ConfigError` whose one-line message names the key path,
the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from mlpsearch.engine.hyperparameters import RULES, Rule, did_you_mean
from mlpsearch.errors import ConfigError

SAMPLERS = ("random", "grid", "tpe", "qmc")
PRUNERS = ("none", "median", "hyperband")
SCALES = ("unit", "standard")

# The engine hyperparameters an experiment searches in [space], or fixes in [space] or [train].
HYPERPARAMETERS: dict[str, Rule] = {
    name: RULES[name]
    for name in (
        *("hidden_layers", "units", "activation", "init", "init_scale", "bias_init"),
        *("learning_rate", "batch_size", "optimizer", "momentum", "weight_decay", "dropout"),
        "label_smoothing",
        "schedule",
    )
}
# Engine settings an experiment fixes once, in [train] only. ``seed`` is the training seed of a
# standalone experiment (``mlpsearch train``), kept only when given; the trials of a study take
# theirs from [study] seed and their slot.
SETTINGS: dict[str, Rule] = {
    name: RULES[name] for name in ("epochs", "patience", "step_size", "gamma", "seed")
}
OPTIONAL_SETTINGS = ("seed",)
OFF = 0  # TOML has no null: an engine setting whose None means "off" (patience) is written 0
MAX_HIDDEN_LAYERS = int(RULES["hidden_layers"].bounds.high)
# Largest number of values of a range with a step, and of configurations of a grid.
MAX_GRID = 1_000_000
MAX_JOBS = 64  # worker processes of one run or worker command


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

    @property
    def size(self) -> int | float:
        """How many values a grid takes from it (``inf`` for a float range without a step; a
        float for an astronomical count)."""
        if self.step is None and not self.is_int:
            return math.inf
        n = (self.high - self.low) / (self.step or 1)
        return math.floor(n + 1e-9) + 1 if n < 2**53 else n + 1

    def grid_values(self) -> list[int]:
        """The values of an integer range, every ``step`` from ``low`` (a grid's)."""
        return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))

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

    @property
    def size(self) -> int:
        return len(self.values)

    def grid_values(self) -> list[Any]:
        return list(self.values)

    def to_toml(self) -> list[Any]:
        return list(self.values)


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched."""

    value: Any

    @property
    def size(self) -> int:
        return 1

    def grid_values(self) -> list[Any]:
        return [self.value]

    def to_toml(self) -> Any:
        return self.value


Spec = Range | Choice | Fixed


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
    # The [train] settings: epochs, patience (0 = off), step_size, gamma, and seed when given.
    train: dict[str, Any]
    space: dict[str, Spec]  # every hyperparameter, searched or fixed ([train] values as Fixed)
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
    """Read and validate an experiment file, and check that its largest network fits here."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
    try:
        exp = parse_experiment(doc, source=str(path))
        check_memory(exp.space)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return exp


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
    size = grid_size(space)
    if size > MAX_GRID:
        raise ConfigError(
            f"space: the grid has {_count(size)} configurations; at most {MAX_GRID} are allowed"
        )


def layer_units(space: dict[str, Spec], layer: int) -> Spec:
    """The spec of the units of hidden layer ``layer`` (1-based)."""
    return space.get(f"units_{layer}", space["units"])


def grid_size(space: dict[str, Spec]) -> int | float:
    """How many configurations a grid search of ``space`` has, counted without listing them."""
    others = math.prod(
        spec.size for name, spec in space.items() if not name.startswith(("units", "hidden"))
    )
    return others * sum(
        math.prod(layer_units(space, i).size for i in range(1, n + 1))
        for n in space["hidden_layers"].grid_values()
    )


def check_memory(space: dict[str, Spec], available: int | None = None) -> None:
    """ConfigError when the largest network of ``space`` cannot fit in ``available`` bytes (by
    default the machine's physical memory).

    Counted before any data is loaded, so as a lower bound: 4 bytes per parameter of the widest,
    deepest network with one input and two classes, plus one float32 activation per hidden unit
    and row of the largest batch.
    """
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare
            return
    depth = _spec_max(space["hidden_layers"])
    widths = [_spec_max(layer_units(space, i)) for i in range(1, depth + 1)]
    sizes = [1, *widths, 2]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    batch = _spec_max(space["batch_size"])
    need = 4 * (params + batch * sum(widths))
    if need > available:
        raise ConfigError(
            f"space: the largest network ({depth} hidden layers of up to {max(widths)} units, "
            f"batch_size {batch}) needs at least {_gib(need)} of memory; this machine has "
            f"{_gib(available)}"
        )


def check_memory_for_data(exp: Experiment, n_in: int, n_out: int, n_rows: int) -> None:
    """ConfigError when ``exp.study.n_jobs`` workers, each training the largest network of the
    space on data of ``n_in`` features and ``n_out`` classes, would need more memory than is
    available now (:func:`mlpsearch.engine.memory.mlp_bytes`: parameters, gradients and the
    state of the hungriest optimizer the space allows, and the buffers of a batch and of an
    evaluation). Checked once the data is loaded and before the study is created."""
    from mlpsearch.engine.memory import available_bytes, describe_bytes, mlp_bytes

    space = exp.space
    depth = _spec_max(space["hidden_layers"])
    widths = [_spec_max(layer_units(space, i)) for i in range(1, depth + 1)]
    batch = _spec_max(space["batch_size"])
    optimizers = _spec_values(space["optimizer"])
    one = max(
        mlp_bytes(
            [n_in, *widths, n_out],
            batch,
            n_rows,
            optimizer=optimizer,
            weight_decay=_spec_max(space["weight_decay"]) > 0,
            dropout=_spec_max(space["dropout"]) > 0,
        )
        for optimizer in optimizers
    )
    need, have = one * exp.study.n_jobs, available_bytes()
    if need > have:
        raise ConfigError(
            f"space: {exp.study.n_jobs} worker(s) training the largest network ({n_in} inputs, "
            f"{depth} hidden layers of up to {max(widths)} units, batch_size {batch}) need "
            f"about {describe_bytes(need)} of memory, and {describe_bytes(have)} is available; "
            "use smaller layers or fewer jobs"
        )


def _spec_values(spec: Spec) -> list[Any]:
    """The values a categorical spec can take."""
    return list(spec.values) if isinstance(spec, Choice) else [spec.value]


def _count(n: int | float) -> str:
    return "too many" if math.isinf(n) else f"{n:.3g}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


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
    if not 1 <= out.n_jobs <= MAX_JOBS:
        raise ConfigError(f"study.n_jobs: {out.n_jobs} is out of range; allowed: 1 to {MAX_JOBS}")
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
    _check_keys(
        train_doc, [*SETTINGS, *HYPERPARAMETERS.keys() - {"units", "hidden_layers"}], "train."
    )
    per_layer = [f"units_{i}" for i in range(1, MAX_HIDDEN_LAYERS + 1)]
    _check_keys(space_doc, [*HYPERPARAMETERS, *per_layer], "space.")

    train: dict[str, Any] = {}
    for name, rule in SETTINGS.items():
        if name in train_doc:
            train[name] = _setting(rule, train_doc[name])
        elif name not in OPTIONAL_SETTINGS:
            train[name] = OFF if rule.default is None else rule.default

    space: dict[str, Spec] = {}
    for name, rule in HYPERPARAMETERS.items():
        if name in train_doc and name in space_doc:
            raise ConfigError(
                f"space.{name}: also set in [train]; set a hyperparameter in one place only"
            )
        if name in train_doc:
            space[name] = Fixed(_checked(rule, f"train.{name}", train_doc[name]))
        elif name in space_doc:
            space[name] = _parse_spec(f"space.{name}", rule, space_doc[name])
        else:
            space[name] = Fixed(rule.default)
    for i, key in enumerate(per_layer, start=1):
        if key in space_doc:
            space[key] = _parse_spec(f"space.{key}", RULES["units"], space_doc[key])
            top = _spec_max(space["hidden_layers"])
            if i > top:
                raise ConfigError(
                    f"space.{key}: layer {i} does not exist; hidden_layers is at most {top}"
                )
    return train, space


def _setting(rule: Rule, value: Any) -> Any:
    """A [train] setting; an optional engine setting is off when written OFF."""
    if rule.optional and value == OFF and _is_int(value):
        return OFF
    return _checked(rule, f"train.{rule.name}", value)


def _spec_max(spec: Spec) -> Any:
    if isinstance(spec, Range):
        return spec.high
    if isinstance(spec, Choice):
        return max(spec.values)
    return spec.value


def _parse_spec(path: str, rule: Rule, raw: Any) -> Spec:
    typ = rule.type
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
        if low > high:
            raise ConfigError(f"{path}: inverted range, low {low} > high {high}")
        if low == high:
            raise ConfigError(f"{path}: empty range, low == high == {low}; use a fixed value")
        if log and low <= 0:
            raise ConfigError(f"{path}: a log range must stay above 0, got low = {low}")
        _checked(rule, f"{path}.low", low)
        _checked(rule, f"{path}.high", high)
        spec = Range(low, high, log, step)
        if step is not None and spec.size > MAX_GRID:
            raise ConfigError(
                f"{path}.step: {step} makes {_count(spec.size)} values from {low} to {high}; "
                f"at most {MAX_GRID} are allowed"
            )
        return spec
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{path}: the choice list is empty")
        values = tuple(_checked(rule, f"{path}[{i}]", v) for i, v in enumerate(raw))
        if len(set(values)) != len(values):
            raise ConfigError(f"{path}: the choice list {list(raw)} repeats a value")
        return Choice(values)
    return Fixed(_checked(rule, path, raw))


def _checked(rule: Rule, path: str, value: Any) -> Any:
    """``value`` if the engine's rule allows it, else ConfigError ``"path: why"``."""
    try:
        return rule.check(value, path, off=repr(OFF))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(path: str, v: Any, typ: type) -> int | float:
    """A range end or step: a finite number, an integer for an integer hyperparameter."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{path}: {v!r} is not a number")
    if typ is int and not isinstance(v, int):
        raise ConfigError(f"{path}: {v!r} is not an integer")
    if not math.isfinite(v):
        raise ConfigError(f"{path}: {v!r} is not a finite number")
    return typ(v)


def _check_choice(path: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        hint = did_you_mean(str(value), allowed)
        raise ConfigError(f"{path}: {value!r} is not allowed{hint}; allowed: {', '.join(allowed)}")


def _check_keys(d: dict[str, Any], allowed: Any, prefix: str) -> None:
    for key in d:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            where = f"{prefix}{key}" if prefix else f"[{key}]"
            raise ConfigError(f"{where}: unknown key{hint}; allowed: {', '.join(allowed)}")


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


def dumps_toml(doc: dict[str, Any]) -> str:
    """``doc`` (tables of TOML values) as TOML text, written by tomli-w, which escapes what
    TOML requires (quotes, backslashes, control characters) and keeps other text as it is."""
    return tomli_w.dumps(doc)
