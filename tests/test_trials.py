"""The stored trial (mlpsearch.trials): what the objective writes is what the record reads;
best, pick and the stored experiment; a malformed stored value is one line in every reader;
the engine fingerprint covers only the modules that compute."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import mlpsearch.engine as engine
from mlpsearch import trials
from mlpsearch.cli import main
from mlpsearch.errors import ConfigError
from mlpsearch.objective import engine_fingerprint, fingerprint
from mlpsearch.progress import trial_line
from mlpsearch.storage import open_storage
from mlpsearch.trials import TrialRecord, best, pick, records, stored_experiment

# --- the record of what the objective wrote --------------------------------------------------


def test_record_holds_everything_the_objective_stored(tiny_study, load_study):
    study = load_study(tiny_study)
    for t, r in zip(study.trials, records(study), strict=True):
        a = trials.attrs(t)  # the stored values by name
        assert (r.number, r.state, r.value) == (t.number, t.state, t.value)
        assert r.params == t.params and r.distributions == t.distributions
        assert r.config == a["config"] and r.config is not a["config"]  # a copy
        assert (r.slot, r.seed) == (a["slot"], a["seed"]) == (t.number, r.config["train"]["seed"])
        assert r.units == tuple(a["config"]["model"]["layer_sizes"][1:-1])
        assert r.activation == a["config"]["model"]["activation"]
        assert r.setting("learning_rate") == t.params["learning_rate"]
        assert r.setting("init_scale") == t.params["init_scale"]
        assert (r.epochs, r.best_epoch) == (a["epochs"], a["best_epoch"])
        assert (r.best_val_error, r.best_train_error) == (
            a["best_val_error"],
            a["best_train_error"],
        )
        assert r.best_val_error == t.value
        assert r.curves.val_error == tuple(a["curve_val_error"])
        assert r.curves.train_loss == tuple(a["curve_train_loss"])
        assert len(r.curves.seconds) == len(r.curves.train_error) == r.epochs
        assert r.val_error == r.curves.val_error[-1]
        assert r.dead_fraction == tuple(a["dead_fraction"]) and len(r.dead_fraction) == len(
            r.units
        )
        assert r.host and r.pid > 0 and r.blas_threads >= 1 and r.seconds > 0
        assert r.engine == engine_fingerprint()
        assert r.numpy == __import__("numpy").__version__
        assert r.started <= r.completed and r.reason == "" and r.retry_of is None
        assert r.finished and not r.requeued


def test_writer_and_reader_share_the_attribute_names(tiny_study, load_study):
    """Every attribute the objective stored is one the module declares (and reads)."""
    declared = {v for k, v in vars(trials).items() if k.isupper() and isinstance(v, str)} | set(
        trials.CURVES.values()
    )
    for t in load_study(tiny_study).trials:
        assert set(t.user_attrs) <= declared, set(t.user_attrs) - declared
        assert set(trials.attrs(t)) <= declared, set(trials.attrs(t)) - declared
        assert set(t.user_attrs) == {"slot", "seed", trials.START, trials.RESULT}


def test_values_stored_one_attribute_each_read_the_same(tiny_study, load_study):
    """Studies of older versions stored each value as an attribute of its own."""
    study = load_study(tiny_study)
    old = optuna.create_study(study_name=study.study_name)
    for t in study.trials:
        old.add_trial(_copy(t, user_attrs=trials.attrs(t)))
    assert "best_val_error" in old.trials[0].user_attrs
    same = [dataclasses.replace(r, started=None, completed=None) for r in records(old)]
    assert same == [dataclasses.replace(r, started=None, completed=None) for r in records(study)]


def test_best_and_pick(tiny_study, load_study):
    study = load_study(tiny_study)
    ranked = sorted(study.trials, key=lambda t: (t.value, t.number))
    assert best(study).number == ranked[0].number
    assert best(records(study)) == best(study)
    assert pick(study).number == ranked[0].number
    assert pick(study, 3).number == 3
    with pytest.raises(
        ConfigError, match=r"^trial 99 is not in study 'tiny' \(its trials: 0 to 5\)$"
    ):
        pick(study, 99)
    empty = optuna.create_study(study_name="empty")
    assert best(empty) is None
    with pytest.raises(ConfigError, match="^study 'empty' has no complete trial yet$"):
        pick(empty)
    with pytest.raises(
        ConfigError, match=r"^trial 0 is not in study 'empty' \(its trials: none\)$"
    ):
        pick(empty, 0)


def test_best_breaks_ties_by_number_and_skips_unfinished(tiny_study, load_study):
    study = optuna.create_study(study_name="ties")
    good = load_study(tiny_study).trials[0]
    for value in (0.2, 0.1, 0.1):
        study.add_trial(_copy(good, value=value))
    study.add_trial(_copy(good, state=TrialState.PRUNED, value=0.01))
    study.add_trial(_copy(good, state=TrialState.FAIL, value=None))
    assert best(study).number == 1
    with pytest.raises(ConfigError, match="^trial 3 of study 'ties' is pruned, not complete$"):
        pick(study, 3)
    assert pick(study, 3, complete=False).state == TrialState.PRUNED  # compare takes it
    failed = _copy(good, state=TrialState.FAIL, value=None, user_attrs={"fail_reason": "x"})
    study.add_trial(failed)
    with pytest.raises(ConfigError, match="^trial 5 of study 'ties' has no learning curve"):
        pick(study, 5, complete=False)


def test_count_finished_leaves_out_requeued_failures(tiny_study, load_study):
    study = optuna.create_study(study_name="requeued")
    good = load_study(tiny_study).trials[0]
    study.add_trial(_copy(good))
    dead = {"fail_reason": "worker host:1 died; re-queued", "slot": 1, "seed": 5}
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=dead))
    gave_up = {"fail_reason": "worker died; not re-queued again (already retried 3 times)"}
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=gave_up))
    assert trials.count_finished(study) == 2
    assert [r.finished for r in records(study)] == [True, False, True]
    assert records(study)[1].requeued and records(study)[1].config is None


def test_stored_experiment_is_validated(tiny_study, load_study):
    study = load_study(tiny_study)
    exp = stored_experiment(study)
    assert exp.study.name == tiny_study.name and exp.study.n_trials == 6
    bare = optuna.create_study(study_name="bare")
    assert stored_experiment(bare, required=False) is None
    with pytest.raises(ConfigError, match="^study 'bare' holds no experiment"):
        stored_experiment(bare)
    bare.set_user_attr(trials.EXPERIMENT_TOML, "[study]\nn_trials = 0\n")
    with pytest.raises(ConfigError, match="^study 'bare': its stored experiment: study.n_trials"):
        stored_experiment(bare, required=False)
    bare.set_user_attr(trials.EXPERIMENT_TOML, "[study\n")
    with pytest.raises(ConfigError, match="^study 'bare': its stored experiment: "):
        stored_experiment(bare)


# --- malformed stored values: one line in every reader ---------------------------------------

DELETE = object()
BAD_VALUES = [
    ("config", "abc", "stored config 'abc' is not a table of model and train settings"),
    ("config", {"model": {"layer_sizes": [64, 8, 10]}}, "stored config"),
    ("best_epoch", None, "stored best_epoch is null"),
    ("best_epoch", DELETE, "stored best_epoch is missing"),
    ("best_epoch", "6", "stored best_epoch '6' is not an integer >= 1"),
    ("best_val_error", [0.1], "stored best_val_error [0.1] is not a number"),
    ("curve_val_error", "0.1 0.2", "stored curve_val_error '0.1 0.2' is not a list of numbers"),
    ("seed", -3, "stored seed -3 is not an integer >= 0"),
    ("blas_threads", True, "stored blas_threads True is not an integer >= 1"),
    ("fail_reason", 7, "stored fail_reason 7 is not a string"),
    ("result", "0.1", "stored result '0.1' is not a table"),
    ("start", [1], "stored start [1] is not a table"),
]


@pytest.mark.parametrize("key, value, message", BAD_VALUES, ids=lambda v: str(v)[:20])
def test_a_malformed_value_is_one_line_in_every_reader(
    broken_study, every_reader_says, key, value, message
):
    bad = broken_study({key: value})
    every_reader_says(bad, f"trial 0 of study 'bad': {message}")


def _model(**changes):
    return lambda c: {**c, "model": {**c["model"], **changes}}


def _train(**changes):
    return lambda c: {**c, "train": {**c["train"], **changes}}


ENGINE_SAYS = "is not a valid engine config: "  # then the engine's own message
BAD_CONFIGS = [
    (_model(activation="swish"), ENGINE_SAYS, "swish"),
    (_train(momentum=1.5), ENGINE_SAYS, "momentum"),
    (_model(width=3), ENGINE_SAYS, "width"),
    (_model(layer_sizes=[64, 0, 10]), "model.layer_sizes [64, 0, 10]: not 2 or more", ""),
    (
        lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k != "learning_rate"}},
        "has no train.learning_rate",
        "",
    ),
]


@pytest.mark.parametrize("change, message, word", BAD_CONFIGS)
def test_a_bad_engine_config_is_one_line_in_every_reader(
    tiny_study, load_study, broken_study, every_reader_says, change, message, word
):
    config = change(trials.attrs(load_study(tiny_study).trials[0])["config"])
    bad = broken_study({"config": config})
    every_reader_says(bad, f"trial 0 of study 'bad': stored config {message}", word)


def test_a_broken_stored_experiment_is_one_line(broken_study, capsys):
    bad = broken_study({}, experiment="[study]\nsampler = 'bayes'\n")
    for args in (["report", str(bad)], ["rerun", str(bad)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("mlpsearch: error: study 'bad': its stored experiment: "), err
        assert "study.sampler" in err and err.count("\n") == 1


@pytest.fixture
def every_reader_says(capsys, load_study):
    """``every_reader_says(folder, message, word="")``: the study in ``folder`` is refused
    with ``message`` (one line, naming ``word``) by every reader and every command."""

    def check(folder: Path, message: str, word: str = "") -> None:
        study = load_study(folder)
        for read in (records, best, lambda s: pick(s, 0), lambda s: trial_line(
                TrialRecord.from_frozen(s.trials[0], "bad"))):  # fmt: skip
            with pytest.raises(ConfigError) as caught:
                read(study)
            assert str(caught.value).startswith(message), str(caught.value)
            assert word in str(caught.value)
        for args in (
            ["report", str(folder)],
            ["compare", str(folder), "0"],
            ["rerun", str(folder)],
        ):
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert err.startswith(f"mlpsearch: error: {message}"), (args, err)
            assert err.count("\n") == 1 and "Traceback" not in err
        assert not (folder / "trials.csv").exists() and not (folder / "best.toml").exists()

    return check


@pytest.fixture
def broken_study(tiny_study, tmp_path, load_study):
    """``broken_study(changes, experiment=None)``: a study 'bad' in a journal of its own,
    ``tmp_path/results/bad``: trial 0 is trial 0 of the fixture with ``changes`` made to its
    user attributes, trial 1 its trial 1 unchanged."""

    def make(changes: dict, experiment: str | None = None) -> Path:
        good = load_study(tiny_study)
        out = tmp_path / "results" / "bad"
        out.mkdir(parents=True)
        study = optuna.create_study(
            study_name="bad", storage=open_storage(f"journal:{out / 'journal.log'}")
        )
        text = good.user_attrs[trials.EXPERIMENT_TOML].replace(
            f'name = "{tiny_study.name}"', 'name = "bad"'
        )
        study.set_user_attr(trials.EXPERIMENT_TOML, text if experiment is None else experiment)
        attrs = copy.deepcopy(good.trials[0].user_attrs)
        for key, value in changes.items():  # where the value is stored (start, result)
            parts = [attrs[p] for p in (trials.START, trials.RESULT) if key in attrs.get(p, {})]
            where = parts[0] if parts else attrs
            if value is DELETE:
                del where[key]
            else:
                where[key] = value
        study.add_trial(_copy(good.trials[0], user_attrs=attrs))
        study.add_trial(_copy(good.trials[1]))
        return out

    return make


def _copy(t: optuna.trial.FrozenTrial, **changes) -> optuna.trial.FrozenTrial:
    fields = {
        "state": t.state,
        "value": t.value,
        "params": t.params,
        "distributions": t.distributions,
        "user_attrs": t.user_attrs,
        "intermediate_values": t.intermediate_values,
    }
    return create_trial(**{**fields, **changes})


# --- the engine fingerprint ------------------------------------------------------------------


def test_fingerprint_covers_only_the_computing_modules(tmp_path):
    source = Path(engine.__file__).parent
    copy = tmp_path / "engine"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert fingerprint(copy) == engine_fingerprint()

    (copy / "files.py").write_text("# file chores change no result\n", encoding="utf-8")
    for path in (copy / "data").glob("*.py"):
        path.write_text(path.read_text(encoding="utf-8") + "\n# a new mirror\n", encoding="utf-8")
    assert fingerprint(copy) == engine_fingerprint()

    network = copy / "network.py"
    network.write_text(network.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert fingerprint(copy) != engine_fingerprint()
