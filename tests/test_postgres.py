"""Several processes, one study, a real PostgreSQL server (the ``postgres`` fixture): joins,
races, kills, Ctrl-C, and passwords that never leak."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from mlpsearch.config import load_experiment
from mlpsearch.liveness import BEAT_KEY, WORKER_KEY
from mlpsearch.storage import open_storage
from mlpsearch.study import open_study, plan, planning_lock
from mlpsearch.trials import attrs
from mlpsearch.workers import claim_waiting

pytestmark = pytest.mark.slow  # every test here runs studies in subprocesses on a server


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()


@pytest.fixture
def trials_of(load_study):
    """``trials_of(url, name)``: the trials of study ``name``; none while it does not exist."""

    def trials(url: str, name: str) -> list:
        study = load_study(url, name, missing_ok=True)
        return study.trials if study is not None else []

    return trials


def waiting_for_an_advisory_lock(server) -> bool:
    """Whether a session of ``server`` waits for an advisory lock (the planning lock)."""
    rows = server.query(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    return rows[0][0] > 0


def assert_every_slot_complete_once(study: optuna.Study, n_trials: int) -> None:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials
    assert sorted(t.user_attrs["slot"] for t in complete) == list(range(n_trials))
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]


def test_two_runs_started_together_enqueue_each_slot_once(
    postgres, tmp_path, root, write_experiment, cli, process_tree, load_study
):
    # two workers each: one BLAS thread per worker process (cpu_count // n_jobs on 2 cores)
    url = postgres.url(postgres.create_database())
    path = write_experiment(tmp_path / "e.toml", "together", n_trials=8, n_jobs=2, epochs=100)
    procs = [
        cli.start("run", str(path), "--storage", url, "--out", str(tmp_path / f"m{i}"), cwd=root)
        for i in (1, 2)
    ]  # two machines, started at the same moment
    with process_tree([p.pid for p in procs]) as tree:
        outs = [finish(p) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    study = load_study(url, "together")
    assert len(study.trials) == 8  # nothing enqueued twice
    assert_every_slot_complete_once(study, 8)
    machines = {tree.get(attrs(t)["pid"]) for t in study.trials}
    assert machines == {p.pid for p in procs}  # both machines took trials
    for i in (1, 2):  # each machine's table shows the whole study
        assert len((tmp_path / f"m{i}" / "together" / "trials.csv").read_text().splitlines()) == 9


def test_planning_waits_for_the_lock(
    postgres, tmp_path, root, write_experiment, cli, wait_until, load_study
):
    url = postgres.url(postgres.create_database())
    path = write_experiment(tmp_path / "e.toml", "locked", n_trials=3, n_jobs=1, epochs=3)
    storage = open_storage(url)
    with planning_lock(storage, "locked"):
        proc = cli.start("run", str(path), "--storage", url, "--out", str(tmp_path), cwd=root)
        wait_until(
            lambda: waiting_for_an_advisory_lock(postgres) or proc.poll() is not None,
            what="the run to wait for the planning lock",
        )
        assert proc.poll() is None
        assert "locked" not in optuna.get_all_study_names(storage)
    _, err = finish(proc)
    assert proc.returncode == 0, err
    assert_every_slot_complete_once(load_study(url, "locked"), 3)


def test_worker_killed_mid_trial_is_taken_over(
    postgres, tmp_path, root, slow_experiment, cli, wait_until, load_study, process_tree
):
    """Machine A runs the study; machine B joins with ``mlpsearch worker`` and is SIGKILLed
    mid-trial; A fails and re-queues B's trial and runs it with the same parameters and seed."""
    url = postgres.url(postgres.create_database())
    path = slow_experiment(tmp_path, "takeover", n_trials=8)
    a = cli.start(
        "run", str(path), "--storage", url, "--jobs", "2", "--out", str(tmp_path), cwd=root
    )
    b = None
    try:
        wait_until(
            lambda: "takeover" in optuna.get_all_study_names(open_storage(url)),
            what="machine A to create the study",
        )
        b = cli.start(
            "worker", "--storage", url, "--study", "takeover", "--jobs", "2",
            cwd=root, start_new_session=True,
        )  # fmt: skip

        with process_tree([b.pid]) as children:  # machine B's worker processes

            def running_in_b():
                for t in load_study(url, "takeover").get_trials(states=(TrialState.RUNNING,)):
                    worker = t.system_attrs.get(WORKER_KEY)  # host:pid:start
                    if worker and int(worker.split(":")[1]) in children:
                        return t
                return None

            victim = wait_until(running_in_b, what="machine B running a trial")
        os.killpg(b.pid, signal.SIGKILL)  # the whole machine B: its parent and its worker
        b.wait(timeout=30)
        _, err = finish(a)
    finally:
        a.kill()
        if b is not None and b.poll() is None:
            os.killpg(b.pid, signal.SIGKILL)
    assert a.returncode == 0, err
    study = load_study(url, "takeover")
    assert_every_slot_complete_once(study, 8)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert "died" in killed.user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params  # the slot's configuration
    assert victim.params.items() <= retry[0].params.items()  # (seen perhaps mid-suggest)
    assert retry[0].user_attrs["seed"] == victim.user_attrs["seed"]
    assert "fail_reason" not in retry[0].user_attrs


def test_trial_of_a_silent_machine_is_taken_over(
    postgres, tmp_path, root, write_experiment, cli, load_study
):
    """A trial claimed by a machine elsewhere whose Optuna heartbeat stopped 5 minutes ago (by
    the database server's clock): a worker fails it, saying so, and re-runs it."""
    import sqlalchemy

    url = postgres.url(postgres.create_database())
    path = write_experiment(tmp_path / "e.toml", "silent", n_trials=3, n_jobs=1, epochs=3)
    storage = open_storage(url)
    exp = load_experiment(path)
    with planning_lock(storage, "silent"):
        study = open_study(exp, storage)
        plan(exp, study, storage, echo=lambda line: None)
    trial_id = claim_waiting(study, storage)  # "machine B" takes a trial ...
    storage.set_trial_system_attr(trial_id, WORKER_KEY, "machine-b:4242:99")
    storage.set_trial_system_attr(trial_id, BEAT_KEY, time.time())
    storage.record_heartbeat(trial_id)
    with storage.engine.begin() as conn:  # ... and has been silent for 5 minutes
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '5 minutes'"
            )
        )
    r = cli("worker", "--storage", url, "--study", "silent", cwd=root)
    assert r.returncode == 0, r.stderr
    study = load_study(url, "silent")
    assert_every_slot_complete_once(study, 3)
    silent = study.trials[storage.get_trial(trial_id).number]
    assert silent.state == TrialState.FAIL
    assert silent.user_attrs["fail_reason"] == (
        "worker silent for over 60 s (no heartbeat); re-queued"
    )
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == silent.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == silent.params  # as enqueued for its slot
    assert retry[0].user_attrs["seed"] == silent.user_attrs["seed"]
    assert WORKER_KEY in retry[0].system_attrs  # its own worker's, not machine B's
    assert not retry[0].system_attrs[WORKER_KEY].startswith("machine-b:")


def test_worker_joins_a_study_and_runs_its_waiting_trials(
    postgres, tmp_path, root, write_experiment, cli, wait_until, load_study, trials_of
):
    url = postgres.url(postgres.create_database())
    path = write_experiment(tmp_path / "e.toml", "joined", n_trials=8, n_jobs=2, epochs=40)
    a = cli.start("run", str(path), "--storage", url, "--out", str(tmp_path), cwd=root)
    wait_until(lambda: trials_of(url, "joined"), what="machine A to plan the trials")
    b = cli.start("worker", "--storage", url, "--study", "joined", "--jobs", "2", cwd=root)
    out_b, err_b = finish(b)
    _, err_a = finish(a)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    assert out_b.startswith("joined study joined: ")
    assert "ran here" in out_b.splitlines()[-1]
    study = load_study(url, "joined")
    assert len(study.trials) == 8
    assert_every_slot_complete_once(study, 8)


def test_password_never_printed_or_written(
    postgres, tmp_path, root, slow_experiment, cli, wait_until, load_study, trials_of
):
    """A run with a password in its URL, Ctrl-C, a resume, a wrong password, a refused port:
    the password appears in no output and no file."""
    url = postgres.url(postgres.create_database())
    path = slow_experiment(tmp_path, "secret", n_trials=4)
    results = tmp_path / "results"
    proc = cli.start("run", str(path), "--storage", url, "--out", str(results), cwd=root)
    wait_until(
        lambda: [t for t in trials_of(url, "secret") if t.state == TrialState.COMPLETE],
        600,
        what="a finished trial",
    )
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: mlpsearch run" in err and "mlpsearch:***@127.0.0.1" in err
    outputs = [out, err]
    resumed = cli("run", str(path), "--storage", url, "--out", str(results), cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert "storage postgresql+psycopg2://mlpsearch:***@127.0.0.1" in resumed.stdout
    outputs += [resumed.stdout, resumed.stderr]
    password = postgres.password
    refused = [
        postgres.url("nodb", password="wrong-Pw9"),  # the server refuses the password
        f"postgresql+psycopg2://mlpsearch:{password}@127.0.0.1:1/db",  # nothing listens
        f"postgresql+psycopg2://mlpsearch:{password}@127.0.0.1:{postgres.port}/missing_db",
        f"postgresql+psycopg2://127.0.0.1:{postgres.port}/db?user=x&password={password}",
    ]
    for bad in refused:
        for command in (
            ["run", str(path), "--storage", bad, "--out", str(tmp_path / "x")],
            ["worker", "--storage", bad, "--study", "secret"],
        ):
            r = cli(*command, cwd=root, timeout=120)
            assert r.returncode == 2, r.stderr
            assert len(r.stderr.splitlines()) == 1 and "cannot open the storage" in r.stderr
            outputs += [r.stdout, r.stderr]
    for text in outputs:
        assert password not in text and "wrong-Pw9" not in text
    assert "password authentication failed" in " ".join(outputs)
    assert not (tmp_path / "x").exists()
    written = [p for p in results.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"experiment.toml", "trials.csv"}
    for p in written:
        assert password.encode() not in p.read_bytes(), p
    assert_every_slot_complete_once(load_study(url, "secret"), 4)


def test_database_lost_mid_run_is_one_line_and_resumable(
    own_postgres, tmp_path, root, slow_experiment, cli, wait_until, load_study, trials_of
):
    """The server stops mid-study (its own server here, stopped as by a crash): one line,
    exit 1, no password; once it is back the same command finishes, losing nothing."""
    server = own_postgres
    url = server.url(server.create_database())
    path = slow_experiment(tmp_path, "lost", n_trials=6)
    results = tmp_path / "results"
    proc = cli.start("run", str(path), "--storage", url, "--out", str(results), cwd=root)

    def finished():
        return {t.number: t.value for t in trials_of(url, "lost") if t.value is not None}

    before = wait_until(finished, 600, what="a finished trial")
    # The test server commits asynchronously (synchronous_commit=off, for speed), and a crash
    # loses the commits of its last moments: those trials were never durably finished, by us
    # or by any client. What we read as finished is made durable before the crash.
    server.query("CHECKPOINT")
    server.stop()
    _, err = finish(proc, timeout=120)
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(
        f"mlpsearch: error: lost the storage postgresql+psycopg2://mlpsearch:***@127.0.0.1:"
        f"{server.port}/"
    )
    assert "finished trials are kept" in lines[0] and "resume with: mlpsearch run" in lines[0]
    assert server.password not in err
    server.start()
    again = cli("run", str(path), "--storage", url, "--out", str(results), cwd=root)
    assert again.returncode == 0, again.stderr
    study = load_study(url, "lost")
    assert_every_slot_complete_once(study, 6)
    assert {t.number: t.value for t in study.trials if t.number in before} == before


def test_load_eight_workers_200_trials(postgres, tmp_path, load_benchmark):
    bench = load_benchmark("load")
    figures = bench.run_load(postgres.url(postgres.create_database()), tmp_path, 8, 200)
    assert figures["complete"] == 200
    assert figures["lost"] == figures["duplicated"] == 0
