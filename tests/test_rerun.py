"""mlpsearch rerun: exact reproduction, fresh seeds, the final test error, best.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest

from mlpsearch.cli import main
from mlpsearch.config import load_experiment
from mlpsearch.engine import MLP
from mlpsearch.rerun import fresh_seeds, rerun, standalone_toml
from mlpsearch.single import fixed_config, train_experiment
from mlpsearch.trials import TrialRecord, attrs, stored_experiment


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    return min(study.trials, key=lambda t: (t.value, t.number))


def test_rerun_reproduces_the_stored_validation_error_exactly(tiny_study, capsys, load_study):
    study = load_study(tiny_study)
    best = best_trial(study)
    assert main(["rerun", str(tiny_study)]) == 0
    out = capsys.readouterr().out
    assert f"trial {best.number} of {tiny_study.name}" in out
    assert "reproduced exactly" in out
    model = MLP.load(tiny_study / "best_model.npz")
    assert model.layer_sizes == attrs(best)["config"]["model"]["layer_sizes"]
    # the saved model is the best epoch's, not the last one's
    assert _val_error(model, tiny_study) == pytest.approx(attrs(best)["best_val_error"], abs=1e-12)


def _val_error(model: MLP, tiny_study: Path) -> float:
    from mlpsearch.data import load_data

    exp = load_experiment(tiny_study / "experiment.toml")
    data = load_data(exp)
    return float((model.predict(data.X_val) != data.y_val).mean())


def test_rerun_of_every_complete_trial_matches(tiny_study, load_study):
    study = load_study(tiny_study)
    for t in study.trials:
        result = rerun(study, tiny_study, trial=t.number, echo=lambda s: None)
        assert result.reproduced and result.got == result.stored == t.value


def test_a_changed_result_is_reported_loudly_with_exit_1(tiny_study, capsys, monkeypatch):
    import mlpsearch.rerun

    real = mlpsearch.rerun.train_best

    def perturbed(config, data):
        changed = {**config, "train": {**config["train"], "learning_rate": 0.5}}
        return real(changed, data)

    monkeypatch.setattr(mlpsearch.rerun, "train_best", perturbed)
    assert main(["rerun", str(tiny_study)]) == 1
    captured = capsys.readouterr()
    assert "NOT REPRODUCED" in captured.err and "reproduced exactly" not in captured.out


def test_best_toml_round_trips_through_mlpsearch_train(tiny_study, tmp_path, load_study, cli):
    study = load_study(tiny_study)
    best = best_trial(study)
    assert main(["rerun", str(tiny_study)]) == 0
    path = tiny_study / "best.toml"
    doc = tomllib.loads(path.read_text())
    assert doc["train"]["seed"] == best.user_attrs["seed"]  # the training seed has its own key
    assert doc["study"]["seed"] == 11  # and [study] seed is the study's
    assert doc["space"]["learning_rate"] == best.params["learning_rate"]

    # in process: the very same validation error, with the file's [train] seed
    run = train_experiment(load_experiment(path))
    assert run.history.best_val_error == attrs(best)["best_val_error"]
    assert run.history.val_error == attrs(best)["curve_val_error"]

    # and through the command line, in a fresh process, with no study around
    save = tmp_path / "model.npz"
    done = cli("train", str(path), "--save", str(save), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"validation error {attrs(best)['best_val_error']:.4f}" in done.stdout
    assert save.is_file()


def test_rerun_of_a_trial_that_is_not_the_best_writes_its_own_files(tiny_study, load_study):
    study = load_study(tiny_study)
    other = max(study.trials, key=lambda t: (t.value, t.number))
    result = rerun(study, tiny_study, trial=other.number, echo=lambda s: None)
    assert result.reproduced
    assert result.files["toml"] == tiny_study / f"trial_{other.number}.toml"
    assert f'name = "{tiny_study.name}_trial{other.number}"' in result.files["toml"].read_text()
    assert not (tiny_study / "best.toml").exists()


def test_fresh_seeds_give_a_mean_and_a_spread(tiny_study, capsys, load_study):
    study = load_study(tiny_study)
    best = best_trial(study)
    assert main(["rerun", str(tiny_study), "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 fresh seeds: validation error mean" in out and "std" in out
    seeds = fresh_seeds(attrs(best)["config"], 3)
    assert seeds == fresh_seeds(attrs(best)["config"], 3)  # derived, not random
    assert len(set(seeds)) == 3 and best.user_attrs["seed"] not in seeds
    assert all(str(s) in out for s in seeds)


def test_final_trains_on_train_and_validation_and_reports_the_test_error(tiny_study, load_study):
    study = load_study(tiny_study)
    best = best_trial(study)
    result = rerun(study, tiny_study, final=True, echo=lambda s: None)
    assert result.test_error is not None and 0.0 <= result.test_error < 0.5
    model = MLP.load(result.files["final_model"])
    assert model.layer_sizes == attrs(best)["config"]["model"]["layer_sizes"]
    assert result.files["final_model"] == tiny_study / "final_model.npz"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trial", "99"], "trial 99 is not in study 'tiny' (its trials: 0 to 5)"),
        (["--seeds", "-1"], "--seeds: -1 must be >= 0"),
        (["--threads", "0"], "--threads: 0 must be >= 1"),
    ],
)
def test_bad_rerun_arguments_are_one_line_errors(tiny_study, capsys, args, message):
    assert main(["rerun", str(tiny_study), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"mlpsearch: error: {message}\n"


def test_standalone_toml_fixes_every_hyperparameter(tiny_study, load_study):
    study = load_study(tiny_study)
    best = TrialRecord.from_frozen(best_trial(study))
    text = standalone_toml(study, best, stored_experiment(study))
    path = tiny_study / "check.toml"
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.searched == {}
    assert exp.data == stored_experiment(study).data
    assert exp.train["seed"] == best.seed


def test_standalone_toml_describes_exactly_each_trials_config(tiny_study, load_study):
    """The round trip, as a test: best.toml, read back and resolved as ``mlpsearch train``
    resolves it, gives back the stored engine config of the trial, for every trial."""
    from mlpsearch.data import load_data

    study = load_study(tiny_study)
    data = load_data(stored_experiment(study))
    for t in study.trials:
        record = TrialRecord.from_frozen(t)
        path = tiny_study / f"check_{t.number}.toml"
        path.write_text(standalone_toml(study, record, stored_experiment(study)))
        exp = load_experiment(path)
        assert fixed_config(exp, data, exp.train["seed"]) == attrs(t)["config"], t.number


def test_train_seed_falls_back_to_the_study_seed(tiny_study, tmp_path, load_study):
    """An experiment without [train] seed trains with its [study] seed, as before the key."""
    study = load_study(tiny_study)
    best = TrialRecord.from_frozen(best_trial(study))
    text = standalone_toml(study, best, stored_experiment(study))
    with_key = tiny_study / "with.toml"
    with_key.write_text(text)
    without = tiny_study / "without.toml"
    lines = text.splitlines()
    train = lines.index("[train]")
    seed_line = next(i for i in range(train, len(lines)) if lines[i].startswith("seed = "))
    del lines[seed_line]
    without.write_text("\n".join(lines).replace("seed = 11", f"seed = {best.seed}", 1))
    assert "seed" not in load_experiment(without).train
    a = train_experiment(load_experiment(with_key))
    b = train_experiment(load_experiment(without))
    assert a.history.val_error == b.history.val_error == list(best.curves.val_error)
    # --seed still wins over both
    c = train_experiment(load_experiment(with_key), seed=best.seed + 1)
    assert c.config["train"]["seed"] == best.seed + 1


@pytest.mark.parametrize("seed, message", [(-1, "out of range"), ("7", "integer")])
def test_a_bad_train_seed_is_one_line(tmp_path, capsys, seed, message):
    from mlpsearch.config import dumps_toml

    path = tmp_path / "e.toml"
    path.write_text(dumps_toml({"train": {"epochs": 2, "seed": seed}}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlpsearch: error: {path}: train.seed: ") and message in err
    assert err.count("\n") == 1


def test_rerun_replaces_its_files_whole(tiny_study, load_study):
    """best.toml and the models are written to a temporary file and renamed over the old one:
    a second rerun gives new inodes and leaves no temporary file."""
    study = load_study(tiny_study)
    first = rerun(study, tiny_study, echo=lambda s: None).files
    inodes = {k: p.stat().st_ino for k, p in first.items()}
    again = rerun(study, tiny_study, echo=lambda s: None).files
    assert again == first and set(again) == {"model", "toml"}
    assert all(again[k].stat().st_ino != ino for k, ino in inodes.items())
    assert [p for p in tiny_study.iterdir() if p.name.endswith(".tmp")] == []


def test_importing_rerun_does_not_import_matplotlib():
    code = "import sys, mlpsearch.rerun; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
