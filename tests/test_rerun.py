"""mlpsearch rerun: exact reproduction, fresh seeds, the final test error, best.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest

from mlpsearch.cli import main
from mlpsearch.config import load_experiment
from mlpsearch.engine import MLP
from mlpsearch.rerun import fresh_seeds, rerun, standalone_toml
from mlpsearch.single import train_experiment


@pytest.fixture
def folder(tiny_study) -> Path:
    return tiny_study


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    return min(study.trials, key=lambda t: (t.value, t.number))


def test_rerun_reproduces_the_stored_validation_error_exactly(folder, capsys, load_study):
    study = load_study(folder)
    best = best_trial(study)
    assert main(["rerun", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"trial {best.number} of {folder.name}" in out
    assert "reproduced exactly" in out
    model = MLP.load(folder / "best_model.npz")
    assert model.layer_sizes == best.user_attrs["config"]["model"]["layer_sizes"]
    # the saved model is the best epoch's, not the last one's
    assert _val_error(model, folder) == pytest.approx(best.user_attrs["best_val_error"], abs=1e-12)


def _val_error(model: MLP, folder: Path) -> float:
    from mlpsearch.data import load_data

    exp = load_experiment(folder / "experiment.toml")
    data = load_data(exp)
    return float((model.predict(data.X_val) != data.y_val).mean())


def test_rerun_of_every_complete_trial_matches(folder, load_study):
    study = load_study(folder)
    for t in study.trials:
        result = rerun(study, folder, trial=t.number, echo=lambda s: None)
        assert result.reproduced and result.got == result.stored == t.value


def test_a_changed_result_is_reported_loudly_with_exit_1(folder, capsys, monkeypatch):
    import mlpsearch.rerun

    real = mlpsearch.rerun.train_best

    def perturbed(config, data):
        changed = {**config, "train": {**config["train"], "learning_rate": 0.5}}
        return real(changed, data)

    monkeypatch.setattr(mlpsearch.rerun, "train_best", perturbed)
    assert main(["rerun", str(folder)]) == 1
    captured = capsys.readouterr()
    assert "NOT REPRODUCED" in captured.err and "reproduced exactly" not in captured.out


def test_best_toml_round_trips_through_mlpsearch_train(folder, tmp_path, load_study, cli):
    study = load_study(folder)
    best = best_trial(study)
    assert main(["rerun", str(folder)]) == 0
    path = folder / "best.toml"
    doc = tomllib.loads(path.read_text())
    assert doc["study"]["seed"] == best.user_attrs["seed"]
    assert doc["space"]["learning_rate"] == best.params["learning_rate"]

    # in process: the very same validation error
    run = train_experiment(load_experiment(path), seed=doc["study"]["seed"])
    assert run.history.best_val_error == best.user_attrs["best_val_error"]
    assert run.history.val_error == best.user_attrs["curve_val_error"]

    # and through the command line, in a fresh process, with no study around
    save = tmp_path / "model.npz"
    done = cli("train", str(path), "--save", str(save), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"validation error {best.user_attrs['best_val_error']:.4f}" in done.stdout
    assert save.is_file()


def test_rerun_of_a_trial_that_is_not_the_best_writes_its_own_files(folder, load_study):
    study = load_study(folder)
    other = max(study.trials, key=lambda t: (t.value, t.number))
    result = rerun(study, folder, trial=other.number, echo=lambda s: None)
    assert result.reproduced
    assert result.files["toml"] == folder / f"trial_{other.number}.toml"
    assert f'name = "{folder.name}_trial{other.number}"' in result.files["toml"].read_text()
    assert not (folder / "best.toml").exists()


def test_fresh_seeds_give_a_mean_and_a_spread(folder, capsys, load_study):
    study = load_study(folder)
    best = best_trial(study)
    assert main(["rerun", str(folder), "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 fresh seeds: validation error mean" in out and "std" in out
    seeds = fresh_seeds(best.user_attrs["config"], 3)
    assert seeds == fresh_seeds(best.user_attrs["config"], 3)  # derived, not random
    assert len(set(seeds)) == 3 and best.user_attrs["seed"] not in seeds
    assert all(str(s) in out for s in seeds)


def test_final_trains_on_train_and_validation_and_reports_the_test_error(folder, load_study):
    study = load_study(folder)
    best = best_trial(study)
    result = rerun(study, folder, final=True, echo=lambda s: None)
    assert result.test_error is not None and 0.0 <= result.test_error < 0.5
    model = MLP.load(result.files["final_model"])
    assert model.layer_sizes == best.user_attrs["config"]["model"]["layer_sizes"]
    assert result.files["final_model"] == folder / "final_model.npz"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trial", "99"], "trial 99 is not in study 'tiny' (its trials: 0 to 5)"),
        (["--seeds", "-1"], "--seeds: -1 must be >= 0"),
        (["--threads", "0"], "--threads: 0 must be >= 1"),
    ],
)
def test_bad_rerun_arguments_are_one_line_errors(folder, capsys, args, message):
    assert main(["rerun", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"mlpsearch: error: {message}\n"


def test_standalone_toml_fixes_every_hyperparameter(folder, load_study):
    study = load_study(folder)
    best = best_trial(study)
    from mlpsearch.rerun import study_experiment

    text = standalone_toml(study, best, study_experiment(study, folder))
    path = folder / "check.toml"
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.searched == {}
    assert exp.data == study_experiment(study, folder).data
