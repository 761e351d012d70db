"""``mlpsearch dashboard``: optuna-dashboard on a study's journal, on 127.0.0.1, for real."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request

import pytest

from mlpsearch.cli import main


@pytest.mark.slow
def test_dashboard_serves_the_study_and_stops_on_ctrl_c(tiny_study, cli, wait_until):
    pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard")
    proc = cli.start(
        "dashboard", str(tiny_study), "--port", "0",
        cwd=tiny_study.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # "dashboard of study tiny: http://127.0.0.1:PORT/ ..."
        assert f"dashboard of study {tiny_study.name}: http://127.0.0.1:" in line, (
            proc.stderr.read()
        )
        base = line.split(": ", 1)[1].split()[0]
        assert base.startswith("http://127.0.0.1:")

        def studies():
            try:
                with urllib.request.urlopen(base + "api/studies", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        summaries = wait_until(studies, what="the dashboard to answer")["study_summaries"]
        assert [s["study_name"] for s in summaries] == [tiny_study.name]
        with urllib.request.urlopen(base + "dashboard/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "dashboard stopped" in out and "Traceback" not in err


def test_without_optuna_dashboard_one_clear_line(tiny_study, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if not installed
    assert main(["dashboard", str(tiny_study), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "optuna-dashboard is not installed" in err[0] and "[dashboard]" in err[0]


def test_dashboard_of_a_missing_study_is_one_line(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path / "nothing")]) == 2
    assert "study folder not found" in capsys.readouterr().err


def test_dashboard_from_python(tiny_study):
    pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard")
    import mlpsearch

    dash = mlpsearch.load(tiny_study).dashboard()
    try:
        assert dash.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(dash.url + "api/studies", timeout=10) as r:
            names = [s["study_name"] for s in json.loads(r.read())["study_summaries"]]
        assert names == [tiny_study.name]
    finally:
        dash.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(dash.url + "api/studies", timeout=2)
