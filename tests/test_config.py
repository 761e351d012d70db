"""Experiment files: validation messages, round trips, and the search space."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mlpsearch import space
from mlpsearch.config import (
    Choice,
    ConfigError,
    Fixed,
    Range,
    load_experiment,
    parse_experiment,
)

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def doc(**sections):
    base = {"study": {"name": "t", "n_trials": 8, "seed": 3}, "space": {}}
    for name, table in sections.items():
        base[name] = {**base.get(name, {}), **table}
    return base


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"study": {"smapler": "random"}}, "study.smapler: unknown key (did you mean 'sampler'?)"),
        ({"trian": {}}, "[trian]: unknown key (did you mean 'train'?)"),
        ({"study": {"n_trials": "ten"}}, "study.n_trials: 'ten' is not an integer"),
        ({"study": {"n_trials": 0}}, "study.n_trials: 0 is out of range"),
        ({"study": {"sampler": "bayes"}}, "study.sampler: 'bayes' is not allowed"),
        ({"study": {"name": "a/b"}}, "study.name: 'a/b' is not a valid study name"),
        ({"data": {"val_fraction": 1.5}}, "data.val_fraction: 1.5 is out of range"),
        ({"data": {"scale": "minmax"}}, "data.scale: 'minmax' is not allowed"),
        ({"train": {"epochs": 0}}, "train.epochs: 0 is out of range"),
        ({"train": {"optimizer": "adamw"}}, "train.optimizer: 'adamw' is not allowed"),
        ({"space": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "inverted range"),
        ({"space": {"learning_rate": {"low": 0.1, "high": 0.1}}}, "empty range"),
        ({"space": {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}}, "above 0"),
        ({"space": {"weight_decay": {"low": 0.0, "high": 0.1, "log": True}}}, "above 0"),
        ({"space": {"activation": []}}, "space.activation: the choice list is empty"),
        ({"space": {"activation": ["relu", "relu"]}}, "repeats a value"),
        ({"space": {"activation": ["relu", "swish"]}}, "space.activation[1]: 'swish'"),
        ({"space": {"units": {"low": 8.5, "high": 64}}}, "space.units.low: 8.5 is not an integer"),
        ({"space": {"units": {"low": 8}}}, "needs both 'low' and 'high'"),
        ({"space": {"units": {"low": 8, "high": 64, "lg": True}}}, "space.units.lg: unknown key"),
        ({"space": {"activation": {"low": 1, "high": 2}}}, "is categorical"),
        ({"space": {"hidden_layers": 9}}, "space.hidden_layers: 9 is out of range"),
        ({"space": {"units_4": 32}}, "space.units_4: layer 4 does not exist"),
        ({"space": {"dropout": 1.0}}, "space.dropout: 1.0 is out of range"),
        (
            {"space": {"momentum": 1.0}},
            "space.momentum: 1.0 is out of range; allowed: 0 <= value < 1",
        ),
        ({"train": {"momentum": -0.5}}, "train.momentum: -0.5 is out of range"),
        (
            {"space": {"units": {"low": 8, "high": 70000}}},
            "space.units.high: 70000 is out of range",
        ),
        (
            {"train": {"patience": -1}},
            "train.patience: -1 is out of range; allowed: value >= 1, or 0 (off)",
        ),
        ({"train": {"seed": -1}}, "train.seed: -1 is out of range; allowed: value >= 0"),
        ({"train": {"seed": "7"}}, "train.seed: '7' is not an integer"),
        ({"space": {"lr": 0.1}}, "space.lr: unknown key"),
        ({"train": {"learning_rate": 0.1}, "space": {"learning_rate": 0.2}}, "in one place only"),
        (
            {"study": {"sampler": "grid"}, "space": {"learning_rate": {"low": 0.1, "high": 1.0}}},
            "the grid sampler needs a choice list",
        ),
    ],
)
def test_bad_experiment_names_the_problem(sections, message):
    with pytest.raises(ConfigError) as err:
        parse_experiment(doc(**sections))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_defaults_and_specs():
    exp = parse_experiment(
        doc(
            space={
                "hidden_layers": {"low": 1, "high": 3},
                "units": {"low": 16, "high": 256, "log": True},
                "activation": ["relu", "tanh"],
                "learning_rate": {"low": 1e-3, "high": 0.5, "log": True},
                "units_1": 100,
            }
        )
    )
    assert exp.space["hidden_layers"] == Range(1, 3)
    assert exp.space["units"] == Range(16, 256, log=True)
    assert exp.space["activation"] == Choice(("relu", "tanh"))
    assert exp.space["units_1"] == Fixed(100)
    assert exp.space["init"] == Fixed("he")
    assert exp.study.sampler == "random" and exp.study.pruner == "none"
    assert set(exp.searched) == {"hidden_layers", "units", "activation", "learning_rate"}


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_to_toml_round_trips(path):
    exp = load_experiment(path)
    again = parse_experiment(tomllib.loads(exp.to_toml()))
    assert again == exp


def test_every_shipped_experiment_is_valid():
    files = sorted(EXPERIMENTS.glob("*.toml"))
    assert {f.stem for f in files} >= {
        "digits_random",
        "fashion_mnist_random",
        "mnist_random",
        "mnist_report",
    }
    for f in files:
        assert load_experiment(f).study.name == f.stem


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing.toml")


SEARCH = {
    "hidden_layers": {"low": 1, "high": 3},
    "units": {"low": 16, "high": 256, "log": True},
    "activation": ["relu", "tanh", "sigmoid"],
    "learning_rate": {"low": 1e-3, "high": 0.5, "log": True},
    "batch_size": {"low": 16, "high": 64, "step": 16},
}


def test_random_draws_depend_on_seed_and_slot_only():
    exp = parse_experiment(doc(space=SEARCH))
    draws = [space.draw_random(exp, slot) for slot in range(20)]
    assert draws == [space.draw_random(exp, slot) for slot in range(20)]
    assert draws != [space.draw_random(exp.replace_study(seed=4), s) for s in range(20)]
    for d in draws:
        assert 1 <= d["hidden_layers"] <= 3
        assert {k for k in d if k.startswith("units_")} == {
            f"units_{i}" for i in range(1, d["hidden_layers"] + 1)
        }
        assert all(16 <= d[f"units_{i}"] <= 256 for i in range(1, d["hidden_layers"] + 1))
        assert 1e-3 <= d["learning_rate"] <= 0.5
        assert d["batch_size"] in (16, 32, 48, 64)
        assert d["activation"] in ("relu", "tanh", "sigmoid")
    assert len({d["activation"] for d in draws}) == 3


def test_grid_enumerates_every_configuration_once():
    exp = parse_experiment(
        doc(
            study={"sampler": "grid"},
            space={
                "hidden_layers": [1, 2],
                "units": [32, 64],
                "activation": ["relu", "tanh"],
                "learning_rate": [0.1, 0.01],
            },
        )
    )
    configs = space.grid(exp)
    # 1 layer: 2 widths; 2 layers: 4 width pairs; times 2 activations x 2 rates
    assert len(configs) == (2 + 4) * 2 * 2
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)
    assert configs == space.grid(exp)
