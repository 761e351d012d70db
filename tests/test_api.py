"""The Python API: the README's example runs as written; load, trials, best, figures, rerun."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import mlpsearch
from mlpsearch.errors import BadInput, ConfigError
from mlpsearch.plots import save


def readme_example(root: Path) -> str:
    """The first ``python`` code block under "## Use it from Python" in README.md."""
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys, root):
    monkeypatch.chdir(tmp_path)
    code = readme_example(root)
    assert "mlpsearch.run(" in code and "mlpsearch.load(" in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    study, rerun, model = namespace["study"], namespace["rerun"], namespace["model"]
    assert isinstance(study.trials, pd.DataFrame) and len(study.trials) >= 4  # + confirmations
    assert (study.trials["state"] == "COMPLETE").all()
    assert study.best.number in study.trials["number"].tolist()
    assert study.best_estimate.trial == study.best.number
    assert (tmp_path / "history.png").stat().st_size > 10_000
    assert rerun.reproduced and 0 <= rerun.test_error < 0.5
    assert "reproduced: True" in out
    # the model's predictions on raw pixel values are the digits' own labels
    last = out.strip().splitlines()[-1]
    predicted, true = last.split(" true: ")
    assert len(re.findall(r"\d", predicted)) == 10
    assert model.labels == tuple(range(10))


def test_load_by_folder_or_by_storage_and_name(tiny_study, tiny_experiment):
    by_folder = mlpsearch.load(tiny_study)
    by_url = mlpsearch.load(storage=f"journal:{tiny_study / 'journal.log'}", study=tiny_study.name)
    assert by_folder.name == by_url.name == tiny_study.name
    assert len(by_folder.trials) == len(by_url.trials) == tiny_experiment.study.n_trials
    assert by_folder.best.number == by_url.best.number
    assert by_folder.trials.equals(by_url.trials)
    with pytest.raises(BadInput, match="study folder not found"):
        mlpsearch.load(tiny_study.parent / "missing")


def test_figures_are_the_ones_the_report_writes(tiny_study, tmp_path):
    study = mlpsearch.load(tiny_study)
    written = study.report()
    figures = study.figures()
    assert list(figures) == study.plots == [p.stem for p in written.plots]
    for path in written.plots:
        fig = figures[path.stem]
        assert isinstance(fig, Figure)
        again = save(fig, tmp_path / path.name)
        assert again.read_bytes() == path.read_bytes(), path.name  # the very same figure
    with pytest.raises(BadInput, match="no such plot"):
        study.figure("nope")


def test_rerun_and_train_give_models(tiny_study):
    study = mlpsearch.load(tiny_study)
    again = study.rerun()
    assert again.reproduced and again.final_model is None
    model = again.model
    assert model.network.layer_sizes == study.best.config["model"]["layer_sizes"]
    trained = mlpsearch.train(tiny_study / "best.toml", save=tiny_study / "trained.npz")
    assert trained.network.layer_sizes == model.network.layer_sizes  # the last epoch's weights
    saved = mlpsearch.Model.load(tiny_study / "trained.npz")
    assert np.array_equal(saved.network.params, trained.network.params)
    assert saved.labels == tuple(range(10)) and saved.scaling.equals(model.scaling)


def test_run_takes_an_experiment_object_and_extends(tmp_path):
    exp = mlpsearch.Experiment  # lazily imported class
    from mlpsearch.config import parse_experiment

    spec = parse_experiment(
        {
            "study": {"name": "obj", "n_trials": 2, "n_jobs": 1, "confirm": {"top": 0}},
            "train": {"epochs": 3},
            "space": {"units": 16},
        }
    )
    assert isinstance(spec, exp)
    study = mlpsearch.run(spec, out=tmp_path, quiet=True)
    assert len(study.trials) == 2
    study = mlpsearch.run(spec, n_trials=3, out=tmp_path, quiet=True)
    assert len(study.trials) == 3 and study.folder == tmp_path / "obj"
    with pytest.raises(ConfigError):
        mlpsearch.run({"study": {"n_trials": 0}}, out=tmp_path, quiet=True)


def test_import_mlpsearch_is_light():
    code = (
        "import sys, mlpsearch; mlpsearch.run; mlpsearch.load; "
        "print(sorted(m for m in ('optuna', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
