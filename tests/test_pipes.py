"""Pipelines: a closed stdout ends the output quietly and never the work; --quiet and --json."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mlpsearch.cli import main

EXPERIMENT = """[study]
name = "piped"
n_trials = 8
n_jobs = 2
seed = 5
confirm = { top = 0 }
[data]
dataset = "digits"
[train]
epochs = 12
patience = 4
batch_size = 32
[space]
hidden_layers = 1
units = { low = 16, high = 64, log = true }
activation = ["relu", "tanh"]
learning_rate = { low = 0.02, high = 0.2, log = true }
"""


@pytest.fixture
def piped(cli):
    """``piped(command, reader, cwd)``: ``mlpsearch COMMAND | READER`` in a shell; stdout is
    the reader's, returncode and stderr ours."""

    def run(command: list[str], reader: str, cwd: Path) -> subprocess.CompletedProcess:
        mlpsearch = shlex.join(cli.command(*command))
        script = f"{mlpsearch} 2>ours.err | {reader}; echo ${{PIPESTATUS[0]}} > ours.rc"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
        )
        done.returncode = int((cwd / "ours.rc").read_text())
        done.stderr = (cwd / "ours.err").read_text()
        return done

    return run


@pytest.mark.slow
def test_report_into_a_closed_pipe_ends_quietly(tiny_study, tmp_path, piped):
    done = piped(["report", str(tiny_study)], "head -1", tmp_path)
    assert done.stdout.splitlines() == [f"study          {tiny_study.name}"]
    assert done.returncode == 0
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.stderr == ""
    assert (tiny_study / "report.html").is_file()  # the files were written whole before


@pytest.mark.slow
def test_a_closed_stdout_never_stops_or_fails_a_running_study(tmp_path, piped, load_study):
    (tmp_path / "piped.toml").write_text(EXPERIMENT)
    done = piped(["run", "piped.toml"], "head -2", tmp_path)
    assert len(done.stdout.splitlines()) == 2
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    states = [t.state.name for t in load_study(tmp_path / "results" / "piped").trials]
    assert states == ["COMPLETE"] * 8
    assert (tmp_path / "results" / "piped" / "trials.csv").is_file()


def test_run_quiet_and_json(tmp_path, capsys, load_study):
    (tmp_path / "piped.toml").write_text(EXPERIMENT)
    out = str(tmp_path / "results")
    args = ["run", str(tmp_path / "piped.toml"), "--n-trials", "2", "--out", out]
    assert main([*args, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert main([*args, "--n-trials", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one JSON object and nothing else
    assert doc["study"] == "piped" and doc["finished"] == 3 and doc["trials"] == 3
    trials = load_study(tmp_path / "results" / "piped").trials
    assert doc["best"]["val_error"] == min(t.value for t in trials)


@pytest.mark.slow
def test_report_and_rerun_quiet_and_json(tiny_study, capsys):
    assert main(["report", str(tiny_study), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["report", str(tiny_study), "--json", "--top", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["study"] == tiny_study.name and len(doc["top"]) == 3 and len(doc["plots"]) >= 5
    assert all(Path(p).is_file() for p in doc["plots"])

    assert main(["rerun", str(tiny_study), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["rerun", str(tiny_study), "--json", "--final"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reproduced"] is True and doc["val_error"] == doc["stored_val_error"]
    assert 0 <= doc["test_error"] < 0.5 and Path(doc["files"]["final_model"]).is_file()
