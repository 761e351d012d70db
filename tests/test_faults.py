"""Fault matrix on journal storage, through the command line: a machine killed, unwritable and
full results folders, a cut or damaged journal, an exception inside a trial, NaN in the data.

Elsewhere: SIGKILL of one worker (test_search.py::test_killed_worker_...), SIGINT of the parent
(test_search.py::test_ctrl_c_..., and on PostgreSQL in test_postgres.py), SIGKILL of a worker
on PostgreSQL (test_postgres.py::test_worker_killed_mid_trial_is_taken_over).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from mlpsearch.liveness import fail_stale
from mlpsearch.storage import open_storage
from mlpsearch.study import planning_lock
from mlpsearch.trials import attrs


def values(study: optuna.Study) -> dict[int, float]:
    """number -> value of every COMPLETE trial."""
    return {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}


def complete_slots(study: optuna.Study) -> list[int]:
    return sorted(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.COMPLETE,)))


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.slow
def test_killed_machine_loses_no_finished_trial(
    tmp_path, slow_experiment, cli, wait_until, running_worker, load_study
):
    """SIGKILL of the parent and its workers at once (a machine that dies) mid-trial; the same
    command then finishes the study, and every trial finished before the kill is kept."""
    path = slow_experiment(tmp_path, "crash", n_trials=6)
    results = tmp_path / "r"
    proc = cli.start(
        "run", str(path), "--out", str(results), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:

        def one_done_and_one_running():
            found = running_worker(results, "crash")
            return found and values(load_study(results / "crash"))

        wait_until(one_done_and_one_running, 600, what="a finished trial while another runs")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = values(load_study(results / "crash"))
    again = cli("run", str(path), "--out", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = load_study(results / "crash")
    assert complete_slots(study) == list(range(6))
    assert {n: v for n, v in values(study).items() if n in before} == before
    assert any("died" in t.user_attrs.get("fail_reason", "") for t in study.trials)


@pytest.mark.slow
def test_worker_paused_past_the_grace_period_drops_its_trial(
    tmp_path, slow_experiment, cli, wait_until, running_worker, load_study
):
    """A worker stopped (SIGSTOP: a suspended machine) until another process takes its trial
    for dead and re-queues it; resumed, it drops that trial quietly and goes on."""
    path = slow_experiment(tmp_path, "paused", n_trials=6)
    results = tmp_path / "r"
    proc = cli.start("run", str(path), "--out", str(results), cwd=tmp_path)
    try:
        victim, pid = wait_until(
            lambda: running_worker(results, "paused"), what="a worker running a trial"
        )
        os.kill(pid, signal.SIGSTOP)
        # The subject of the test, not a wait for an event: silence for longer than the grace
        # period (here 1 s) that fail_stale measures from the worker's last heartbeat.
        time.sleep(1.5)
        storage = open_storage(f"journal:{results / 'paused' / 'journal.log'}")
        study = optuna.load_study(study_name="paused", storage=storage)
        assert victim.number in fail_stale(study, storage, grace=1.0)
        os.kill(pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == ""
    study = load_study(results / "paused")
    assert complete_slots(study) == list(range(6))
    dropped = study.trials[victim.number]
    assert dropped.state == TrialState.FAIL and "silent" in dropped.user_attrs["fail_reason"]


def test_results_path_through_a_file_is_refused(tmp_path, write_experiment, cli):
    (tmp_path / "results").write_text("a file where the results folder should be")
    path = write_experiment(tmp_path / "e.toml", "nofolder", n_trials=2)
    r = cli("run", str(path), "--out", str(tmp_path / "results" / "sub"), cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "is not a folder" in line and str(tmp_path / "results") in line
    assert (tmp_path / "results").read_text().startswith("a file")


@pytest.mark.slow
def test_read_only_results_folder_is_refused_and_the_study_is_untouched(
    tmp_path, mount_point, write_experiment, cli
):
    point, mounted = mount_point
    path = write_experiment(tmp_path / "e.toml", "ro", n_trials=2, epochs=3)
    results = tmp_path / "r"
    assert cli("run", str(path), "--out", str(results), cwd=tmp_path).returncode == 0
    journal = (results / "ro" / "journal.log").read_bytes()
    subprocess.run(["mount", "--bind", "-o", "ro", str(results), str(point)], check=True)
    mounted.append(point)
    for out in (point, point / "new"):  # resume the study / a new folder on read-only media
        r = cli("run", str(path), "--n-trials", "4", "--out", str(out), cwd=tmp_path)
        assert r.returncode == 2
        assert "is not writable" in one_error_line(r.stderr)
    assert (results / "ro" / "journal.log").read_bytes() == journal
    assert not (results / "new").exists()


@pytest.mark.slow
def test_full_disk_stops_with_one_line_and_the_journal_intact(
    tmp_path, small_disk, write_experiment, cli, load_study
):
    """Results (and journal) on a 64 KiB tmpfs: it fills mid-study. One line, exit 1; the
    journal stays readable with every trial it had; after making room, the same command
    finishes the study without losing any of them."""
    point = small_disk("64k")
    path = write_experiment(tmp_path / "e.toml", "full", n_trials=30, epochs=3)
    r = cli("run", str(path), "--out", str(point), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    line = one_error_line(r.stderr)
    assert "No space left on device" in line and "finished trials are kept" in line
    assert line.startswith(
        f"mlpsearch: error: No space left on device: {point / 'full' / 'journal.log'}; "
    )
    assert "resume with: mlpsearch run" in line
    journal = point / "full" / "journal.log"
    raw = journal.read_bytes()
    assert raw.endswith(b"\n") and all(json.loads(x) for x in raw.splitlines())
    kept = values(load_study(point / "full"))
    assert kept  # some trials finished before the disk was full
    assert not list((point / "full").glob("*.tmp"))
    assert not (point / "full" / "trials.csv").exists()
    subprocess.run(["mount", "-o", "remount,size=4m", str(point)], check=True)
    again = cli("run", str(path), "--out", str(point), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = load_study(point / "full")
    assert complete_slots(study) == list(range(30))
    assert {n: v for n, v in values(study).items() if n in kept} == kept


@pytest.fixture
def finished_study(tmp_path, write_experiment, cli):
    """``finished_study(name, n_trials=3)``: a study of 3-epoch trials run through the command
    line in ``tmp_path``; its experiment file and results folder."""

    def run(name: str, n_trials: int = 3) -> tuple[Path, Path]:
        path = write_experiment(tmp_path / "e.toml", name, n_trials=n_trials, epochs=3)
        results = tmp_path / "r"
        assert cli("run", str(path), "--out", str(results), cwd=tmp_path).returncode == 0
        return path, results

    return run


@pytest.mark.slow
def test_cut_last_record_is_set_aside_with_a_warning(finished_study, cli, load_study, tmp_path):
    """A writer killed mid-append leaves a last line without its newline: the next run sets
    it aside (kept beside the journal, named in a warning) and goes on; nothing finished is
    lost, and the records appended after it are readable."""
    path, results = finished_study("cut")
    journal = results / "cut" / "journal.log"
    before = values(load_study(results / "cut"))
    last = journal.read_bytes().splitlines()[-1]
    with open(journal, "ab") as f:
        f.write(last[: len(last) // 2])  # half a record, no newline
    r = cli("run", str(path), "--n-trials", "5", "--out", str(results), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning = [x for x in r.stderr.splitlines() if "warning" in x]
    assert len(warning) == 1 and "cut short" in warning[0] and "set it aside" in warning[0]
    aside = list(journal.parent.glob("journal.log.partial-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == last[: len(last) // 2]
    study = load_study(results / "cut")
    assert {n: v for n, v in values(study).items() if n in before} == before
    assert complete_slots(study) == list(range(5))


@pytest.mark.slow
def test_damaged_record_inside_the_journal_is_a_clear_error(finished_study, cli, tmp_path):
    """A damaged line that is not the last: not repairable silently; exit 2, one line, and
    the journal left as it is."""
    path, results = finished_study("damaged")
    journal = results / "damaged" / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:10] + b"\n"
    journal.write_bytes(b"".join(lines))
    damaged = journal.read_bytes()
    r = cli("run", str(path), "--out", str(results), cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "damaged" in line and str(journal) in line
    assert journal.read_bytes() == damaged


@pytest.mark.slow
def test_exception_inside_a_trial_is_stored_with_its_traceback(
    tmp_path, cli, wait_until, load_study
):
    """Memory taken away after the up-front check, as when other programs fill a shared
    machine: here the run's address space is limited while it waits for the planning lock
    (after its memory check, before it starts its workers, which inherit the limit). The trials
    too large for what is left fail with MemoryError and its traceback on the trial; the others
    complete and the run succeeds."""
    path = tmp_path / "e.toml"
    path.write_text(
        '[study]\nname = "oom"\nn_trials = 6\nn_jobs = 2\nseed = 1\nconfirm = { top = 0 }\n'
        '[data]\ndataset = "digits"\n'
        "[train]\nepochs = 3\n[space]\nhidden_layers = 2\nunits = [16, 14000]\n"
    )  # two layers of 14000 units: about 3 GiB per worker, which the check lets through
    journal = tmp_path / "j" / "journal.log"
    url = f"journal:{journal}"
    storage = open_storage(url)
    before = set(journal.parent.iterdir())
    with planning_lock(storage, "oom"):
        lock_files = set(journal.parent.iterdir()) - before
        proc = cli.start(
            "run", str(path), "--storage", url, "--out", str(tmp_path / "r"), cwd=tmp_path
        )  # fmt: skip
        wait_until(
            lambda: lock_files & open_files(proc.pid) or proc.poll() is not None,
            what="the run to wait at the planning lock",
        )
        assert proc.poll() is None, proc.communicate()
        # 1.5 GiB more than it has mapped now: room for the small networks' trials, not for
        # the 2.2 GiB of weights, gradients and velocity of the large one
        limit = _mapped_bytes(proc.pid) + (3 << 29)
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    study = load_study(url, "oom")
    failed = study.get_trials(states=(TrialState.FAIL,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(failed) + len(complete) == 6 and failed and complete
    for t in study.trials:
        big = t.params["units_1"] == t.params["units_2"] == 14000
        assert (t.state == TrialState.FAIL) == big
    for t in failed:
        assert attrs(t)["fail_reason"].startswith("MemoryError: Unable to allocate")
        tb = attrs(t)["traceback"]
        assert tb.startswith("Traceback (most recent call last):") and "MemoryError" in tb
        assert "objective.py" in tb
    assert "failed    MemoryError" in out  # the progress line says why


def _mapped_bytes(pid: int) -> int:
    """The address space process ``pid`` has mapped (VmSize)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for process {pid}")


def test_nan_in_the_data_is_refused_before_any_training(tmp_path, cli):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    X[17, 2] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=np.arange(60) % 3)
    path = tmp_path / "e.toml"
    path.write_text(
        f'[study]\nname = "nan"\nn_trials = 2\n[data]\ndataset = "{tmp_path}/nan.npz"\n'
    )
    r = cli("run", str(path), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "NaN" in line and "row 18" in line and "nan.npz" in line
    assert not (tmp_path / "r").exists()  # no study, no results folder


def open_files(pid: int) -> set[Path]:
    """The files process ``pid`` holds open (empty once it is gone)."""
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                found.add(Path(os.readlink(fd)))
            except OSError:  # closed meanwhile
                pass
    except OSError:
        pass
    return found


@pytest.mark.slow
def test_journal_planning_waits_for_the_lock(
    tmp_path, write_experiment, cli, wait_until, load_study
):
    path = write_experiment(tmp_path / "e.toml", "wait", n_trials=3, epochs=3)
    journal = tmp_path / "j" / "journal.log"
    storage = open_storage(f"journal:{journal}")
    before = set(journal.parent.iterdir())
    with planning_lock(storage, "wait"):
        lock_files = set(journal.parent.iterdir()) - before
        assert lock_files, "the planning lock made no file beside the journal"
        proc = cli.start(
            "run", str(path), "--storage", f"journal:{journal}", "--out", str(tmp_path / "r"),
            cwd=tmp_path,
        )  # fmt: skip
        wait_until(
            lambda: lock_files & open_files(proc.pid) or proc.poll() is not None,
            what="the run to open the planning lock's file",
        )
        assert proc.poll() is None  # waiting at the lock, not finished or failed
        assert journal.stat().st_size == 0  # nothing planned while we hold the lock
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert complete_slots(load_study(f"journal:{journal}", "wait")) == [0, 1, 2]


@pytest.mark.slow
def test_two_runs_started_together_on_one_journal(
    tmp_path, write_experiment, cli, process_tree, load_study
):
    # two workers each: one BLAS thread per worker process (cpu_count // n_jobs on 2 cores)
    path = write_experiment(tmp_path / "e.toml", "pair", n_trials=8, n_jobs=2, epochs=100)
    journal = tmp_path / "shared" / "journal.log"
    url = f"journal:{journal}"
    procs = [
        cli.start(
            "run", str(path), "--storage", url, "--out", str(tmp_path / f"m{i}"), cwd=tmp_path
        )
        for i in (1, 2)
    ]
    with process_tree([p.pid for p in procs]) as tree:
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    study = load_study(f"journal:{journal}", "pair")
    assert len(study.trials) == 8  # nothing enqueued twice
    assert complete_slots(study) == list(range(8))
    assert {tree.get(attrs(t)["pid"]) for t in study.trials} == {p.pid for p in procs}


@pytest.mark.slow
def test_load_eight_workers_200_trials_on_a_journal(tmp_path, load_benchmark):
    bench = load_benchmark("load")

    figures = bench.run_load(f"journal:{tmp_path / 'journal.log'}", tmp_path, 8, 200)
    assert figures["errors"] == []
    assert figures["complete"] == 200
    assert figures["lost"] == figures["duplicated"] == 0
    assert figures["processes"] >= 2


@pytest.mark.slow
def test_worker_on_a_journal_needs_an_existing_study(finished_study, cli, tmp_path):
    path, results = finished_study("done", n_trials=2)
    url = f"journal:{results / 'done' / 'journal.log'}"
    before = (results / "done" / "journal.log").read_bytes()
    r = cli("worker", "--storage", url, "--study", "nope", cwd=tmp_path)
    assert r.returncode == 2
    assert "no study 'nope'" in one_error_line(r.stderr) and "done" in r.stderr
    r = cli("worker", "--storage", url, "--study", "done", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 of 2 trials finished; 0 ran here" in r.stdout
    assert (results / "done" / "journal.log").read_bytes() == before
    shutil.rmtree(results)


@pytest.mark.slow
def test_journal_lock_held_by_a_hung_process_stops_with_one_line(
    finished_study, lock_holder, monkeypatch, capsys
):
    """A process that is running (not stopped: a stopped holder is gone past, see
    test_paused.py) and keeps the journal's lock: run and worker give up after the journal's
    lock limit (here 1 s) with one line naming the journal and the holder, exit 1, and leave
    the journal as it was."""
    import mlpsearch.journal
    from mlpsearch.cli import main

    path, results = finished_study("held", n_trials=2)
    journal = results / "held" / "journal.log"
    before = journal.read_bytes()
    holder = lock_holder(Path(f"{journal}.flock"))
    monkeypatch.setattr(mlpsearch.journal, "JOURNAL_LOCK_SECONDS", 1.0)
    capsys.readouterr()
    lines = {}
    for args in (
        ["run", str(path), "--n-trials", "3", "--out", str(results)],
        ["worker", "--storage", f"journal:{journal}", "--study", "held"],
    ):
        started = time.monotonic()
        assert main(args) == 1
        assert time.monotonic() - started < 30
        lines[args[0]] = one_error_line(capsys.readouterr().err)
        assert lines[args[0]].startswith(
            f"mlpsearch: error: journal {journal}: process {holder.pid} has held its lock "
            "for over 1 s (is it hung, or on another machine?)"
        )
    assert "finished trials are kept" in lines["run"] and "resume with" in lines["run"]
    assert journal.read_bytes() == before
