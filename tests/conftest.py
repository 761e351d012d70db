"""What the tests share: helpers and fixtures, declared once, here.

Test modules never import from each other nor from this folder (``test_suite.py`` checks it):
they ask for what they share by fixture name. A helper that a second test module needs moves
here, as a fixture with a line in the table below. The PostgreSQL server code, which the
benchmarks use too, is :mod:`mlpsearch.testing.postgres`; among the tests only this file
imports it.
Studies run in subprocesses, and anything over about 5 s, are marked ``slow``: the quick run
``python -m pytest -m "not slow"`` leaves them out (CI runs everything).

=====================  =========================================================================
fixture                what it gives
=====================  =========================================================================
``root``               the repository's root folder
``cli``                ``python -m mlpsearch ARGS`` in a subprocess: ``cli(*args, cwd=...)`` runs
                       it to the end; ``cli.start(*args, cwd=...)`` starts it in the background
``wait_until``         ``wait_until(condition, timeout, what=...)``: poll until it holds
``load_study``         an Optuna study, from a study folder or from a storage URL and a name
``make_experiment``    a small digits experiment (``write_experiment``: as a file;
                       ``slow_experiment``: one whose trials are slow)
``running_worker``     a RUNNING trial of a study and the pid of the worker running it
``process_tree``       which processes given parents start, while it is open
``children_of``        the child processes of a process, now
``idx_bytes``          the IDX encoding of an array (``write_mnist_like``: the four IDX files)
``isolated_data``      a private data cache, offline, no ``$MLPSEARCH_DATA``, no system folders
``mount_point``        a folder to mount file systems on (``small_disk``: a small tmpfs)
``tiny_study``         a private copy of a small finished study (run once per session from
                       ``tiny_experiment``)
``lock_holder``        a process holding the lock on a file until the test ends
``postgres``           a PostgreSQL server for the session (``own_postgres``: one for one test)
``load_benchmark``     a script of ``experiments/benchmarks/``, imported as a module
=====================  =========================================================================
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.config import Experiment, dumps_toml, parse_experiment
from mlpsearch.engine.data import datasets, download
from mlpsearch.liveness import WORKER_KEY
from mlpsearch.runner import run_study
from mlpsearch.storage import default_url, open_storage
from mlpsearch.testing import postgres as pg

ROOT = Path(__file__).resolve().parent.parent

# A shell starts a background job (``pytest ... &``) with SIGINT ignored, and every process it
# starts inherits that: the Ctrl-C tests would then see nothing happen. They need Python's own
# handler here, and the default disposition in the commands they start (a handler, unlike
# "ignored", is reset when a child process starts).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository's root folder (``engine/``, ``search/``, ``experiments/``...)."""
    return ROOT


# --- the command line, as a user runs it -----------------------------------------------------


class Cli:
    """Runs ``python -m mlpsearch ARGS`` in a subprocess, output captured as text."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen, bool]] = []  # (process, own session?)

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "mlpsearch", *args]

    def __call__(self, *args: str, cwd: Path, timeout: float = 300, **kwargs: Any):
        """Run it to the end (at most ``timeout`` seconds); the ``CompletedProcess``."""
        return subprocess.run(
            self.command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def start(self, *args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen:
        """Start it in the background (stdout and stderr piped unless ``kwargs`` say otherwise).

        Whatever is still running when the test ends is killed (its whole session when started
        with ``start_new_session=True``, as a machine that dies).
        """
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kwargs}
        proc = subprocess.Popen(self.command(*args), cwd=cwd, **options)
        self.started.append((proc, bool(kwargs.get("start_new_session"))))
        return proc

    def kill_started(self, since: int = 0) -> None:
        """Kill what was started (from number ``since`` on) and is still running."""
        for proc, own_session in self.started[since:]:
            if proc.poll() is None:  # not reaped yet: its pid is still ours
                if own_session:
                    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers
                else:
                    proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        del self.started[since:]


@pytest.fixture(scope="session")
def cli() -> Iterator[Cli]:
    """``cli(*args, cwd=...)`` runs ``python -m mlpsearch ARGS``; ``cli.start`` starts it."""
    runner = Cli()
    yield runner
    runner.kill_started()


@pytest.fixture(autouse=True)
def _no_process_left_running(cli: Cli) -> Iterator[None]:
    """A test that fails half-way leaves none of the processes it started behind."""
    since = len(cli.started)
    yield
    cli.kill_started(since)


def _wait_until(condition: Callable[[], Any], timeout: float = 300.0, *, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g} s for {what}; it did not happen")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def wait_until() -> Callable[..., Any]:
    """``wait_until(condition, timeout=300, what="...")``: call ``condition()`` every 0.1 s
    until it returns something true, and return that; fail the test, saying ``what`` did not
    happen, after ``timeout`` seconds (a bound for a busy machine, not a speed check: on an
    idle one, what the tests wait for takes seconds)."""
    return _wait_until


# --- studies -----------------------------------------------------------------------------------


def _load_study(
    where: str | Path, name: str | None = None, *, missing_ok: bool = False
) -> optuna.Study | None:
    if isinstance(where, Path):  # a study folder: results/<name>/journal.log
        name = where.name
        journal = where / "journal.log"
        if missing_ok and (not journal.exists() or journal.stat().st_size == 0):
            return None  # not opened: opening would create the file
        url = default_url(where.parent, name)
    else:
        url = where
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        if missing_ok:
            return None
        raise


@pytest.fixture(scope="session")
def load_study() -> Callable[..., optuna.Study | None]:
    """``load_study(folder)`` the study of a results folder ``results/<name>``;
    ``load_study(url, name)`` study ``name`` in a storage. With ``missing_ok=True``, None for a
    study that does not exist (yet), and a missing journal is not created."""
    return _load_study


def _experiment_doc(
    name: str,
    *,
    n_trials: int = 6,
    n_jobs: int = 2,
    epochs: int = 8,
    seed: int = 7,
    sampler: str | None = None,
    pruner: str | None = None,
    confirm: dict[str, int] | None = None,
    **space: Any,
) -> dict[str, Any]:
    study = {"name": name, "n_trials": n_trials, "n_jobs": n_jobs, "seed": seed}
    study |= {k: v for k, v in (("sampler", sampler), ("pruner", pruner)) if v is not None}
    # by default the search machinery alone: confirmation (tests/test_confirm.py) off
    study["confirm"] = {"top": 0} if confirm is None else confirm
    return {
        "study": study,
        "data": {"dataset": "digits"},
        "train": {"epochs": epochs, "batch_size": 64},
        "space": {
            "hidden_layers": {"low": 1, "high": 2},
            "units": {"low": 8, "high": 32},
            "activation": ["relu", "tanh"],
            "learning_rate": {"low": 0.01, "high": 0.2, "log": True},
            **space,
        },
    }


def _write_experiment(path: Path, name: str, **options: Any) -> Path:
    path.write_text(dumps_toml(_experiment_doc(name, **options)))
    return path


@pytest.fixture(scope="session")
def make_experiment() -> Callable[..., Experiment]:
    """``make_experiment(name, *, n_trials=6, n_jobs=2, epochs=8, seed=7, sampler=None,
    pruner=None, confirm=None, **space)``: a small search on digits (1 or 2 hidden layers of 8
    to 32 relu or tanh units, learning rate 0.01 to 0.2), ``space`` entries added or replaced;
    no confirmation runs unless ``confirm`` (``{"top": 2, "seeds": 2}``) asks for them."""
    return lambda name, **options: parse_experiment(_experiment_doc(name, **options))


@pytest.fixture(scope="session")
def write_experiment() -> Callable[..., Path]:
    """``write_experiment(path, name, **options)``: :func:`make_experiment`'s experiment as a
    TOML file at ``path``; returns ``path``."""
    return _write_experiment


@pytest.fixture(scope="session")
def slow_experiment() -> Callable[[Path, str, int], Path]:
    """``slow_experiment(folder, name, n_trials)``: ``folder/<name>.toml``, trials of about a
    second each, so that a signal lands mid-trial."""

    def write(folder: Path, name: str, n_trials: int) -> Path:
        return _write_experiment(
            folder / f"{name}.toml",
            name,
            n_trials=n_trials,
            epochs=600,
            units={"low": 96, "high": 128},
        )

    return write


@pytest.fixture(scope="session")
def running_worker() -> Callable[[Path, str], tuple[FrozenTrial, int] | None]:
    """``running_worker(results, name)``: ``(trial, worker pid)`` of a RUNNING trial of the
    study in ``results/<name>``, or None while there is none."""

    def find(results: Path, name: str) -> tuple[FrozenTrial, int] | None:
        study = _load_study(results / name, missing_ok=True)
        if study is None:
            return None
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            worker = t.system_attrs.get(WORKER_KEY)  # host:pid:start
            if worker:
                return t, int(worker.split(":")[1])
        return None

    return find


def _parent_pid(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if _parent_pid(stat.parent.name) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.fixture(scope="session")
def children_of() -> Callable[[int], list[int]]:
    """``children_of(pid)``: the pids of the processes whose parent is ``pid``, now."""
    return _children_of


@pytest.fixture(scope="session")
def process_tree():
    """``with process_tree(parents) as seen:`` collects ``{child pid: parent pid}`` of the given
    processes while they run, so that a trial's ``pid`` (a loky worker) tells which parent
    ("machine") ran it."""

    @contextmanager
    def watch_children(parents: list[int]) -> Iterator[dict[int, int]]:
        seen: dict[int, int] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.1):
                for stat in Path("/proc").glob("[0-9]*/stat"):
                    try:
                        ppid = _parent_pid(stat.parent.name)
                    except (OSError, ValueError, IndexError):
                        continue
                    if ppid in parents:
                        seen[int(stat.parent.name)] = ppid

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()

    return watch_children


TINY_STUDY = {
    "study": {"name": "tiny", "n_trials": 6, "n_jobs": 1, "seed": 11, "confirm": {"top": 0}},
    "data": {"dataset": "digits"},
    "train": {"epochs": 10, "patience": 4, "batch_size": 32, "schedule": "cosine"},
    "space": {
        "hidden_layers": {"low": 1, "high": 2},
        "units": {"low": 8, "high": 64, "log": True},
        "activation": ["relu", "tanh", "gelu"],
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
        "init_scale": {"low": 0.5, "high": 2.0},
    },
}


@pytest.fixture(scope="session")
def tiny_experiment() -> Experiment:
    """The experiment of :func:`tiny_study`: 6 trials named "tiny", random search on digits."""
    return parse_experiment(TINY_STUDY)


@pytest.fixture(scope="session")
def _tiny_study_made(tmp_path_factory, tiny_experiment) -> Path:
    results = tmp_path_factory.mktemp("study") / "results"
    run_study(tiny_experiment, results, echo=lambda line: None)  # a few seconds
    return results / tiny_experiment.study.name


@pytest.fixture(scope="session")
def copy_tiny_study(_tiny_study_made) -> Callable[[Path], Path]:
    """``copy_tiny_study(dest)``: a private copy, ``dest/results/tiny``, of a finished 6-trial
    study on digits (made once per session from :func:`tiny_experiment`)."""

    def copy(dest: Path) -> Path:
        folder = dest / "results" / _tiny_study_made.name
        shutil.copytree(_tiny_study_made, folder, ignore=shutil.ignore_patterns("*.flock"))
        return folder

    return copy


@pytest.fixture
def tiny_study(copy_tiny_study, tmp_path) -> Path:
    """``tmp_path/results/tiny``: a private copy of the finished 6-trial study on digits."""
    return copy_tiny_study(tmp_path)


# --- data files --------------------------------------------------------------------------------


def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype[type_code]).tobytes()


@pytest.fixture(scope="session")
def idx_bytes() -> Callable[..., bytes]:
    """``idx_bytes(arr, type_code=0x08)``: the IDX encoding of ``arr`` (big-endian values, as
    the format stores them; 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64)."""
    return _idx_bytes


MNIST_ROLES = ("train-images", "train-labels", "test-images", "test-labels")  # download.FILES'


@pytest.fixture(scope="session")
def write_mnist_like() -> Callable[..., dict[str, np.ndarray]]:
    """``write_mnist_like(folder, n_train=100, n_test=30, side=4, gz=True, seed=0, skip=())``:
    the four IDX files of a tiny MNIST-like set under their published names (``.gz`` or not),
    roles in ``skip`` left out; returns the arrays by role (``train-images``...)."""

    def write(folder, n_train=100, n_test=30, side=4, gz=True, seed=0, skip=()):
        rng = np.random.default_rng(seed)
        arrays = {
            "train-images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
            "train-labels": (np.arange(n_train) % 10).astype(np.uint8),
            "test-images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
            "test-labels": (np.arange(n_test) % 10).astype(np.uint8),
        }
        folder.mkdir(parents=True, exist_ok=True)
        for role, filename in zip(MNIST_ROLES, download.FILES, strict=True):
            if role in skip:
                continue
            content = _idx_bytes(arrays[role])
            if gz:
                (folder / filename).write_bytes(gzip.compress(content))
            else:
                (folder / filename.removesuffix(".gz")).write_bytes(content)
        return arrays

    return write


@pytest.fixture
def isolated_data(tmp_path, monkeypatch) -> Path:
    """Data loading that touches nothing outside ``tmp_path``: a private cache (returned), no
    ``$MLPSEARCH_DATA``, no system folders, no network (``MLPSEARCH_OFFLINE``)."""
    monkeypatch.setenv("MLPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLPSEARCH_OFFLINE", "1")
    monkeypatch.delenv("MLPSEARCH_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {})
    return tmp_path / "cache"


# --- file systems, PostgreSQL and benchmarks -------------------------------------------------


@pytest.fixture
def mount_point(tmp_path) -> Iterator[tuple[Path, list[Path]]]:
    """``(point, mounted)``: an empty folder to mount on (as root), and a list to which a test
    appends what it mounted, unmounted at the end; skips where mounting is not allowed."""
    point = tmp_path / "mnt"
    point.mkdir()
    probe = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount here ({probe.stderr.decode().strip() or 'not root'})")
    subprocess.run(["umount", str(point)], check=True)
    mounted: list[Path] = []
    yield point, mounted
    for p in reversed(mounted):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.fixture
def small_disk(mount_point) -> Callable[[str], Path]:
    """``small_disk(size)``: the mount point with a tmpfs of ``size`` (``"64k"``, ``"4m"``) on
    it, a disk that fills soon, unmounted after the test; skips where mounting is not allowed."""
    point, mounted = mount_point

    def mount(size: str) -> Path:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
        )
        mounted.append(point)
        return point

    return mount


def _started_server() -> pg.Server:
    reason = pg.skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        return pg.start_server()
    except subprocess.CalledProcessError as err:
        pytest.fail(f"PostgreSQL did not start: {err.cmd[-1]}: {err.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.Server]:
    """A running PostgreSQL server shared by the session (``postgres.url(db)``,
    ``postgres.create_database()``, ``postgres.password``); skips, saying why, where there is
    none."""
    server = _started_server()
    try:
        yield server
    finally:
        pg.stop_server(server)


@pytest.fixture
def own_postgres() -> Iterator[pg.Server]:
    """A PostgreSQL server for this test alone (it may stop and restart it)."""
    server = _started_server()
    try:
        yield server
    finally:
        pg.stop_server(server)


LOCK_HOLDER = """
import sys, time
from mlpsearch.engine.files import FileLock
assert FileLock(sys.argv[1], timeout=5).acquire()
print("held", flush=True)
time.sleep(600)  # until killed
"""


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path], subprocess.Popen]]:
    """``lock_holder(path)``: a process that holds the lock (``FileLock``) on ``path`` until
    the test ends (then it is resumed if stopped, and killed); returns once it holds it."""
    procs: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("load")``: ``experiments/benchmarks/load.py`` imported as a module."""

    def load(stem: str) -> ModuleType:
        path = ROOT / "experiments" / "benchmarks" / f"{stem}.py"
        spec = importlib.util.spec_from_file_location(f"benchmark_{stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
