"""Studies end to end: parallel workers, reproducibility, failures, kills and resumes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from mlpsearch.config import load_experiment
from mlpsearch.runner import run_study
from mlpsearch.threads import blas_kernel, worker_threads
from mlpsearch.trials import BLAS_KERNEL, NUMPY, attrs


def configs(study: optuna.Study) -> dict[int, tuple]:
    """slot -> (params, seed) of every finished trial."""
    return {
        t.user_attrs["slot"]: (sorted(t.params.items()), t.user_attrs["seed"])
        for t in study.get_trials(states=(TrialState.COMPLETE,))
    }


def test_configurations_do_not_depend_on_the_number_of_workers(tmp_path, write_experiment):
    path = write_experiment(tmp_path / "e.toml", "repro", n_trials=8)
    exp = load_experiment(path)
    one = run_study(exp.replace_study(n_jobs=1), tmp_path / "one", echo=lambda s: None)
    two = run_study(exp.replace_study(n_jobs=2), tmp_path / "two", echo=lambda s: None)
    assert one.finished == two.finished == 8
    assert configs(one.study) == configs(two.study)
    assert len(configs(one.study)) == 8
    # same configuration and seed on the same data: the same validation error
    by_slot = {t.user_attrs["slot"]: t.value for t in one.study.get_trials()}
    assert by_slot == {t.user_attrs["slot"]: t.value for t in two.study.get_trials()}


def test_two_workers_finish_every_trial_once(tmp_path, write_experiment):
    # trials long enough that a worker starting late under load still takes some: 8-epoch
    # trials (tens of milliseconds) can all be done by the first worker before the second starts
    path = write_experiment(tmp_path / "e.toml", "pair", n_trials=10, epochs=120)
    result = run_study(load_experiment(path), tmp_path / "results", echo=lambda s: None)
    trials = result.study.get_trials()
    assert len(trials) == 10
    assert sorted(t.number for t in trials) == list(range(10))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(10))
    assert len({attrs(t)["pid"] for t in trials}) == 2  # both workers took trials
    kernel = blas_kernel()  # numpy's, here as in the workers (whatever else each has loaded)
    for t in trials:
        a = attrs(t)  # the stored values by name
        assert a["blas_threads"] == worker_threads(2)  # the workers' share of the cores
        assert a[BLAS_KERNEL] == kernel and a[NUMPY] == np.__version__
        assert len(a["curve_val_error"]) == a["epochs"] > 0
        assert t.value == a["best_val_error"] == min(a["curve_val_error"])
        assert len(a["dead_fraction"]) == len(a["config"]["model"]["layer_sizes"]) - 2
    csv = (tmp_path / "results" / "pair" / "trials.csv").read_text().splitlines()
    assert len(csv) == 11


def test_diverging_trial_fails_and_the_study_goes_on(tmp_path, write_experiment):
    path = write_experiment(tmp_path / "e.toml", "diverge", n_trials=6, learning_rate=[0.05, 1e6])
    result = run_study(load_experiment(path), tmp_path / "results", echo=lambda s: None)
    trials = result.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 6 and failed and complete
    assert all(t.params["learning_rate"] == 1e6 for t in failed)
    assert all(attrs(t)["fail_reason"].startswith("diverged") for t in failed)
    assert all(t.params["learning_rate"] == 0.05 for t in complete)


def test_resume_extends_the_study(tmp_path, write_experiment):
    path = write_experiment(tmp_path / "e.toml", "grow", n_trials=4)
    exp = load_experiment(path)
    first = run_study(exp, tmp_path / "r", echo=lambda s: None)
    before = {t.number: t.value for t in first.study.get_trials()}
    second = run_study(exp.replace_study(n_trials=7), tmp_path / "r", echo=lambda s: None)
    trials = second.study.get_trials()
    assert len(trials) == 7
    assert {t.number: t.value for t in trials if t.number in before} == before
    alone = run_study(exp.replace_study(n_trials=7, name="alone"), tmp_path / "r", echo=print)
    assert configs(alone.study) == configs(second.study)


@pytest.mark.slow
def test_resume_with_a_changed_space_is_refused(tmp_path, write_experiment, cli, load_study):
    path = write_experiment(tmp_path / "e.toml", "fixed", n_trials=2)
    run_study(load_experiment(path), tmp_path / "r", echo=lambda s: None)
    write_experiment(path, "fixed", n_trials=2, activation=["sigmoid"])
    result = cli("run", str(path), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mlpsearch: error: study 'fixed' already exists with a different experiment "
        "(space.activation changed); use --study NAME for a new study"
    ]
    assert len(load_study(tmp_path / "r" / "fixed").get_trials()) == 2


@pytest.mark.slow
def test_killed_worker_trial_is_rerun_with_the_same_parameters_and_seed(
    tmp_path, slow_experiment, cli, wait_until, running_worker, load_study
):
    path = slow_experiment(tmp_path, "kill", n_trials=6)
    results = tmp_path / "r"
    proc = cli.start("run", str(path), "--out", str(results), cwd=tmp_path)
    try:
        victim, pid = wait_until(
            lambda: running_worker(results, "kill"), what="a worker running a trial"
        )
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    # the parent either recovered by itself or stopped; running it again finishes the study
    again = cli("run", str(path), "--out", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = load_study(results / "kill")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(6))
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert "died" in killed.user_attrs["fail_reason"]
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1
    # the slot's configuration as enqueued (the victim may have been seen mid-suggest)
    assert retry[0].params == killed.params
    assert victim.params.items() <= retry[0].params.items()
    assert retry[0].user_attrs["seed"] == victim.user_attrs["seed"]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_keeps_finished_trials(
    tmp_path, slow_experiment, cli, wait_until, running_worker, load_study
):
    path = slow_experiment(tmp_path, "stop", n_trials=8)
    results = tmp_path / "r"
    proc = cli.start("run", str(path), "--out", str(results), cwd=tmp_path)

    def finished():
        found = running_worker(results, "stop")
        if not found:
            return None
        return load_study(results / "stop").get_trials(states=(TrialState.COMPLETE,))

    done_before = wait_until(finished, 600, what="a finished trial while another runs")
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 10
    assert "resume with: mlpsearch run" in err
    study = load_study(results / "stop")
    kept = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert {t.number for t in done_before} <= kept
    assert not study.get_trials(states=(TrialState.RUNNING,))  # re-queued, not left running
    again = cli("run", str(path), "--out", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    slots = [
        t.user_attrs["slot"]
        for t in load_study(results / "stop").get_trials(states=(TrialState.COMPLETE,))
    ]
    assert sorted(slots) == list(range(8))


@pytest.mark.slow
def test_default_run_completes_on_digits(tmp_path, root, cli, load_study):
    # 200 trials, about 50 s on 2 idle cores: a bound for a busy machine, not a speed check
    result = cli("run", "--out", str(tmp_path / "results"), cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr
    exp = load_experiment(root / "experiments" / "digits_random.toml")
    study = load_study(tmp_path / "results" / "digits_random")
    everything = study.get_trials()
    trials = [t for t in everything if "slot" in t.user_attrs]  # the search's
    assert len(trials) == exp.study.n_trials
    confirming = [t for t in everything if "confirm_of" in t.user_attrs]  # then, 5 x 3 seeds
    assert len(confirming) == exp.study.confirm.top * exp.study.confirm.seeds == 15
    failed = [t for t in trials if t.state != TrialState.COMPLETE]
    # a random search over learning rates up to 0.3 meets a few that diverge: failed, not lost
    assert len(failed) < exp.study.n_trials // 10
    assert all(attrs(t)["fail_reason"].startswith("diverged") for t in failed)
    assert study.best_value < 0.03
    assert "best: trial" in result.stdout and " ± " in result.stdout
    assert "next: mlpsearch report " in result.stdout
