"""One source of hyperparameter rules: the engine's table, and the experiment schema derived
from it.

For every hyperparameter and [train] setting of the schema, the values the schema accepts at the
edges of its rule (each end, a value just inside, each choice) are accepted by the engine, which
builds the network and trains one step with them; the values just outside are rejected by both,
in one line naming the key. Every registry's names are exactly the schema's choices, and a name
added to a registry is allowed everywhere with no second edit.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from mlpsearch import space
from mlpsearch.config import (
    HYPERPARAMETERS,
    MAX_GRID,
    OFF,
    SETTINGS,
    ConfigError,
    check_memory,
    dumps_toml,
    grid_size,
    load_experiment,
    parse_experiment,
)
from mlpsearch.engine import ACTIVATIONS, INITIALIZERS, MLP, OPTIMIZERS, SCHEDULES, TrainConfig
from mlpsearch.engine.files import write_atomic
from mlpsearch.engine.hyperparameters import RULES
from mlpsearch.engine.training import Trainer

N_IN, N_OUT, ROWS = 3, 2, 4  # the tiny problem every accepted value trains one step on
REGISTRIES = {"activation": ACTIVATIONS, "init": INITIALIZERS, "optimizer": OPTIMIZERS}
REGISTRIES["schedule"] = SCHEDULES
SCHEMA = {**HYPERPARAMETERS, **SETTINGS}
TOML_INT_MAX = 2**63 - 1


def section(name: str) -> str:
    return "train" if name in SETTINGS else "space"


def edges(name: str) -> tuple[list, list]:
    """(values the schema must accept, values just outside) for hyperparameter ``name``."""
    rule = SCHEMA[name]
    if rule.choices:
        return list(rule.choices), ["no-such-" + name, ""]
    b = rule.bounds
    inside, outside = [], []
    if rule.type is int:
        step_in, step_out = (lambda v, d: v + d), (lambda v, d: v - d)
    else:
        step_in = lambda v, d: math.nextafter(v, v + d)  # noqa: E731
        step_out = lambda v, d: math.nextafter(v, v - d)  # noqa: E731
    for end, d, is_open in ((b.low, 1, b.low_open), (b.high, -1, b.high_open)):
        if math.isinf(end):  # an unbounded side: a large value is accepted
            inside.append(TOML_INT_MAX if rule.type is int else -d * 1e3)
            continue
        end = rule.type(end)
        inside.append(step_in(end, d))
        if is_open:
            outside.append(end)
        else:
            inside.append(end)
            outside.append(step_out(end, d))
    if rule.optional:  # off, written 0 in an experiment file
        inside.append(OFF)
        outside = [v for v in outside if v != OFF] + [OFF - 1]
    return inside, outside


def experiment(name: str, value) -> dict:
    return {"study": {"name": "edge"}, section(name): {name: value}}


def engine_config(exp) -> dict:
    values = space.suggest(None, exp.space)  # every value is fixed: the trial is never asked
    return space.trial_config(exp, values, exp.train.get("seed", 0), N_IN, N_OUT)


def train_one_step(config: dict) -> float:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, N_IN)).astype(np.float32)
    y = np.arange(ROWS) % N_OUT
    model = MLP(**config["model"])
    loss, _, _ = Trainer(model, X, y, TrainConfig(**config["train"])).run_epoch(1)
    return loss


CASES = [(n, v, True) for n in SCHEMA for v in edges(n)[0]]
CASES += [(n, v, False) for n in SCHEMA for v in edges(n)[1]]


def test_every_schema_key_has_edge_cases():
    assert {n for n, _, ok in CASES if ok} == set(SCHEMA)
    bounded = {n for n, r in SCHEMA.items() if r.choices or not math.isinf(r.bounds.low)}
    assert {n for n, _, ok in CASES if not ok} == bounded
    assert ("momentum", 1.0, False) in CASES and ("dropout", 1.0, False) in CASES


@pytest.mark.parametrize(
    "name, value", [(n, v) for n, v, ok in CASES if ok], ids=lambda x: repr(x)[:24]
)
def test_value_the_schema_accepts_trains_in_the_engine(name, value):
    exp = parse_experiment(experiment(name, value))
    config = engine_config(exp)
    if name in ("hidden_layers", "units"):
        hidden = config["model"]["layer_sizes"][1:-1]
        assert hidden == ([64] * value if name == "hidden_layers" else [value])
    elif name == "seed":
        assert config["train"]["seed"] == config["model"]["seed"] == value
    else:
        part = config[RULES[name].part]
        assert part[name] == (None if RULES[name].optional and value == OFF else value)
    assert math.isfinite(train_one_step(config))


def raw_engine_config(name: str, value) -> dict:
    """The default experiment's engine config with ``value`` put in place, unchecked."""
    config = engine_config(parse_experiment({}))
    if name == "hidden_layers":
        config["model"]["layer_sizes"] = [N_IN, *[64] * value, N_OUT]
    elif name == "units":
        config["model"]["layer_sizes"] = [N_IN, value, N_OUT]
    else:
        config[RULES[name].part][name] = value
        if name == "seed":
            config["model"]["seed"] = value
    return config


@pytest.mark.parametrize(
    "name, value", [(n, v) for n, v, ok in CASES if not ok], ids=lambda x: repr(x)[:24]
)
def test_value_just_outside_is_rejected_by_schema_and_engine(name, value):
    with pytest.raises(ConfigError) as schema_err:
        parse_experiment(experiment(name, value))
    message = str(schema_err.value)
    assert message.startswith(f"{section(name)}.{name}: ") and "\n" not in message
    config = raw_engine_config(name, value)
    with pytest.raises(ValueError) as engine_err:
        MLP(**config["model"])
        TrainConfig(**config["train"])
    message = str(engine_err.value)
    assert name in message.split(":")[0] and "\n" not in message


@pytest.mark.parametrize("name", sorted(set(HYPERPARAMETERS) - set(REGISTRIES)))
def test_range_at_the_rule_ends_is_accepted(name):
    rule = RULES[name]
    inside = sorted(edges(name)[0])
    spec = {"low": inside[0], "high": inside[-1]}
    exp = parse_experiment({"space": {name: spec}})
    assert (exp.space[name].low, exp.space[name].high) == (inside[0], inside[-1])
    assert exp.space[name].is_int == (rule.type is int)


def test_schema_defaults_are_the_engine_defaults():
    config = engine_config(parse_experiment({}))
    model = MLP(**config["model"])
    assert TrainConfig(**config["train"]) == TrainConfig()
    assert (model.activations, model.init, model.init_scale, model.bias_init) == (
        ["relu"],
        "he",
        1.0,
        0.0,
    )
    assert model.architecture() == MLP([N_IN, 64, N_OUT]).architecture()


# --- registries ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_schema_offers_exactly_the_registry(name):
    registry = REGISTRIES[name]
    assert SCHEMA[name].choices == tuple(registry)
    exp = parse_experiment({"space": {name: list(registry)}})
    assert exp.space[name].values == tuple(registry)
    with pytest.raises(ConfigError) as err:
        parse_experiment({"space": {name: "no-such-name"}})
    assert str(err.value).endswith("allowed: " + ", ".join(registry))


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_a_registered_name_needs_no_second_edit(monkeypatch, name):
    registry = REGISTRIES[name]
    monkeypatch.setitem(registry, "added", next(iter(registry.values())))
    exp = parse_experiment(experiment(name, "added"))
    assert math.isfinite(train_one_step(engine_config(exp)))


# --- [train] seed ----------------------------------------------------------------------------


def test_train_seed_is_optional_and_apart_from_the_study_seed():
    plain = parse_experiment({"study": {"seed": 7}})
    assert "seed" not in plain.train and plain.study.seed == 7
    exp = parse_experiment({"study": {"seed": 7}, "train": {"seed": 123}})
    assert exp.train["seed"] == 123 and exp.study.seed == 7
    again = parse_experiment(tomllib.loads(exp.to_toml()))
    assert again == exp and again.train["seed"] == 123
    for bad, why in ((-1, "out of range"), (1.5, "not an integer"), ("x", "not an integer")):
        with pytest.raises(ConfigError, match=f"^train.seed: .*{why}"):
            parse_experiment({"train": {"seed": bad}})


# --- TOML written by tomli-w -----------------------------------------------------------------

AWKWARD = 'quote " back\\slash \t tab \x01\x1f\x7f ctrl é 数 ☃\nnew line'


def test_strings_round_trip_exactly_through_the_writer(tmp_path):
    doc = {
        "study": {"name": "étude-数_1.0", "n_trials": 3},
        "data": {"dataset": "digits", "data_dir": AWKWARD, "label_column": 'a"b\\c'},
        "train": {"epochs": 2, "seed": TOML_INT_MAX},
        "space": {"activation": ["relu", "tanh"], "units": {"low": 8, "high": 16, "step": 4}},
    }
    exp = parse_experiment(doc)
    path = tmp_path / "e.toml"
    write_atomic(path, exp.to_toml())
    again = parse_experiment(tomllib.loads(path.read_text(encoding="utf-8")))
    assert again == exp
    assert again.study.name == "étude-数_1.0"
    assert again.data.data_dir == AWKWARD and again.data.label_column == 'a"b\\c'
    assert tomllib.loads(dumps_toml({"t": {"s": AWKWARD}})) == {"t": {"s": AWKWARD}}
    assert load_experiment(path) == exp


# --- sizes checked when the experiment is read -----------------------------------------------


def test_absurd_grid_is_refused_with_its_size():
    units = {"low": 1, "high": 1000, "step": 1}
    doc = {"study": {"sampler": "grid"}, "space": {"hidden_layers": [1, 2, 3], "units": units}}
    with pytest.raises(ConfigError) as err:
        parse_experiment(doc)
    assert str(err.value) == (
        f"space: the grid has 1e+09 configurations; at most {MAX_GRID} are allowed"
    )
    doc["space"]["hidden_layers"] = [1, 2]  # 1000 + 1000**2 = 1,001,000: just over
    with pytest.raises(ConfigError, match="1e\\+06 configurations"):
        parse_experiment(doc)
    doc["space"]["units"] = {"low": 1, "high": 999, "step": 1}  # 999 + 999**2 = 999,000
    assert grid_size(parse_experiment(doc).space) == 999 + 999**2


def test_grid_size_counts_what_the_grid_lists():
    doc = {
        "study": {"sampler": "grid"},
        "space": {
            "hidden_layers": {"low": 1, "high": 3, "step": 2},
            "units": [8, 16, 32],
            "units_3": {"low": 4, "high": 12, "step": 4},
            "activation": ["relu", "tanh"],
            "learning_rate": [0.1, 0.01, 0.001],
        },
    }
    exp = parse_experiment(doc)
    assert grid_size(exp.space) == len(space.grid(exp)) == (3 + 3 * 3 * 3) * 2 * 3


@pytest.mark.parametrize("step", [1e-300, 5e-324, 1e-7])
def test_absurd_float_step_is_refused(step):
    with pytest.raises(ConfigError) as err:
        parse_experiment({"space": {"dropout": {"low": 0.0, "high": 0.5, "step": step}}})
    assert str(err.value).startswith(f"space.dropout.step: {step} makes ")
    assert "values from 0.0 to 0.5; at most 1000000 are allowed" in str(err.value)


def test_network_larger_than_memory_is_refused():
    exp = parse_experiment({"space": {"hidden_layers": 8, "units": 65536}})
    with pytest.raises(ConfigError) as err:
        check_memory(exp.space, available=2**30)
    assert str(err.value) == (
        "space: the largest network (8 hidden layers of up to 65536 units, batch_size 64) "
        "needs at least 112 GiB of memory; this machine has 1 GiB"
    )
    check_memory(parse_experiment({"space": {"units": 65536}}).space, available=2**30)
    wide_batch = parse_experiment({"space": {"units": 4096, "batch_size": [64, 1_000_000]}})
    with pytest.raises(ConfigError, match="batch_size 1000000"):
        check_memory(wide_batch.space, available=2**33)


def physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "train, study, space_, words",
    [
        ({"optimizer": "momentum"}, {}, {"momentum": 1.0}, ["space.momentum", "1.0"]),
        ({"momentum": 1.0}, {}, {}, ["train.momentum", "0 <= value < 1"]),
        ({}, {"sampler": "grid"}, {"units": {"low": 1, "high": 60000, "step": 1},
                                  "hidden_layers": [1, 2]}, ["space", "configurations"]),
        ({}, {}, {"learning_rate": {"low": 0.1, "high": 1.0, "step": 1e-300}},
         ["space.learning_rate.step", "values"]),
        ({}, {}, {"hidden_layers": 8, "units": 65536}, ["space", "GiB of memory"]),
    ],
)  # fmt: skip
def test_bad_rules_exit_2_before_any_study(tmp_path, train, study, space_, words):
    if "GiB of memory" in words and physical_memory() > 100 * 2**30:
        pytest.skip("this machine holds a 112 GiB network")
    doc = {"study": {"name": "never", "n_trials": 2, **study}, "train": train, "space": space_}
    (tmp_path / "e.toml").write_text(dumps_toml(doc), encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "mlpsearch", "run", "e.toml", "--out", "results"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.toml"]  # no study, no results
