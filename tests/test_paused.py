"""A process stopped (SIGSTOP) while it holds the journal's lock freezes nobody: runs, workers,
report and a second run go on (the lock is a lease), and the trials of healthy workers are not
failed as silent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from optuna.trial import TrialState

from mlpsearch.journal import flock_holder, process_state

HOLD_AND_STOP = textwrap.dedent(
    """
    import fcntl, os, signal, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # paused with the lock, as a worker mid-append
    """
)


@pytest.fixture
def stopped_holder(wait_until):
    """``stopped_holder(lock_file)``: a process that takes the lock and stops itself (SIGSTOP)
    holding it; returns once it is stopped."""

    def start(lock_file) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_AND_STOP, str(lock_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "held"
        wait_until(lambda: process_state(proc.pid) == "T", 10, what="the holder to stop")
        return proc

    return start


@pytest.mark.slow
def test_a_paused_lock_holder_freezes_nobody(
    tmp_path, stopped_holder, write_experiment, cli, load_study
):
    path = write_experiment(tmp_path / "p.toml", "p", n_trials=4, n_jobs=2, epochs=3)
    r = cli("run", str(path), "--n-trials", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    journal = tmp_path / "results" / "p" / "journal.log"
    holder = stopped_holder(f"{journal}.flock")
    try:
        assert flock_holder(journal.with_name("journal.log.flock")) == holder.pid
        started = time.monotonic()
        report = cli("report", "results/p", cwd=tmp_path)  # readers take no lock at all
        assert report.returncode == 0, report.stderr
        # extends the study to 4 trials (2 more, 2 workers), storing its new target: a plain
        # `run` would resume to the target of 2 that the first `--n-trials 2` stored
        second = cli("run", str(path), "--n-trials", "4", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert time.monotonic() - started < 240
        assert "Traceback" not in second.stderr
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
    study = load_study(tmp_path / "results" / "p")
    trials = study.get_trials()
    assert sorted(t.user_attrs["slot"] for t in trials if t.state == TrialState.COMPLETE) == [
        0,
        1,
        2,
        3,
    ]
    assert not [t for t in trials if "silent" in str(t.user_attrs.get("fail_reason", ""))]


def test_process_state_and_lock_holder_are_read_from_proc(tmp_path, stopped_holder):
    holder = stopped_holder(tmp_path / "x.flock")
    try:
        assert process_state(holder.pid) == "T"
        assert flock_holder(tmp_path / "x.flock") == holder.pid
        assert process_state(os.getpid()) in ("R", "S")
    finally:
        holder.kill()
        holder.wait()
    assert process_state(holder.pid) == "gone"
    assert flock_holder(tmp_path / "x.flock") is None  # released by the kernel


def test_liveness_fails_the_paused_workers_trial_not_the_healthy_ones(tmp_path, stopped_holder):
    """Both trials silent for longer than the grace period (the healthy worker was held up
    too): only the one whose worker is stopped is failed and re-queued."""
    import optuna

    from mlpsearch.liveness import BEAT_KEY, WORKER_KEY, _start_time, fail_stale
    from mlpsearch.storage import open_storage
    from mlpsearch.workers import claim_waiting

    storage = open_storage(f"journal:{tmp_path / 'j.log'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({}, user_attrs={"slot": 0})
    study.enqueue_trial({}, user_attrs={"slot": 1})
    paused = stopped_holder(tmp_path / "unused.flock")
    try:
        host = __import__("socket").gethostname()
        old = time.time() - 3600
        number = {}  # pid -> the number of the trial it claimed (claims pick at random)
        for pid in (os.getpid(), paused.pid):
            trial_id = claim_waiting(study, storage)
            number[pid] = storage.get_trial(trial_id).number
            storage.set_trial_system_attr(trial_id, BEAT_KEY, old)
            storage.set_trial_system_attr(trial_id, WORKER_KEY, f"{host}:{pid}:{_start_time(pid)}")
        failed = fail_stale(study, storage)
    finally:
        paused.kill()
        paused.wait()
    assert failed == [number[paused.pid]]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[number[os.getpid()]] == TrialState.RUNNING
    assert states[number[paused.pid]] == TrialState.FAIL


def test_judge_tells_dead_stopped_running_and_elsewhere(tmp_path, stopped_holder, wait_until):
    from mlpsearch.liveness import DEAD, ELSEWHERE, RUNNING, STOPPED, _start_time, judge

    host = socket.gethostname()
    me = f"{host}:{os.getpid()}:{_start_time(os.getpid())}"
    paused = stopped_holder(tmp_path / "x.flock")
    stopped = f"{host}:{paused.pid}:{_start_time(paused.pid)}"
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    started = _start_time(zombie.pid)
    try:
        wait_until(lambda: process_state(zombie.pid) == "Z", 30, what="the child to exit")
        assert judge(me) == RUNNING
        assert judge(stopped) == STOPPED
        assert judge(f"{host}:{zombie.pid}:{started}") == DEAD  # exited, not yet reaped
        assert judge(f"{host}:{os.getpid()}:1") == DEAD  # the pid reused by a later process
        assert judge(f"elsewhere.example:{os.getpid()}:1") == ELSEWHERE
    finally:
        paused.kill()
        paused.wait()
        zombie.wait()
    assert judge(stopped) == DEAD  # gone


def test_a_dead_worker_whose_heartbeat_went_stale_is_said_to_have_died(tmp_path, wait_until):
    """Optuna's heartbeat (RDB storages) goes stale 60 s after a worker dies; when nobody
    looked before (every worker busy with a long trial), the worker is still known dead from
    its pid on this host: "died", not "silent"."""
    import optuna
    from optuna.storages import RDBStorage

    from mlpsearch.liveness import WORKER_KEY, _start_time, fail_stale
    from mlpsearch.workers import claim_waiting

    storage = RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({}, user_attrs={"slot": 0})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = _start_time(gone.pid)
    gone.wait()
    trial_id = claim_waiting(study, storage)
    storage.record_heartbeat(trial_id)
    storage.set_trial_system_attr(
        trial_id, WORKER_KEY, f"{socket.gethostname()}:{gone.pid}:{started}"
    )
    wait_until(lambda: storage._get_stale_trial_ids(study._study_id), 60, what="a stale heartbeat")
    assert fail_stale(study, storage, grace=1) == [0]
    reason = study.trials[0].user_attrs["fail_reason"]
    assert "died" in reason and "silent" not in reason, reason
