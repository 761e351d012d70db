"""The journal at size: what one trial stores, and how long ``report`` and a worker's start
take on a journal of 10,000 and of 100,000 trials.

Opening a journal replays it whole, so both grow with the study. The journals are made here:
a real study of ``--real`` one-epoch digits trials (``mlpsearch run``, the storage_scaling
experiment) gives the templates; each template trial is then written again and again through
Optuna's own ``JournalStorage``, call by call as a worker writes it (enqueue with its
parameters, claim, worker identity and heartbeat, start, epoch, result, end), into a journal
held in memory and saved once, so the lines are those of a real run (no training: the big
journals are built, and the output says so). Each journal also holds one WAITING trial, for
the worker.

Printed per size: the file's size and bytes per trial (and what dominates them: the bytes
per trial of each kind of record), the wall time of ``mlpsearch report`` (tables, plots,
report.html) and of a worker's start (a fresh process opening the journal, loading the study
and claiming the waiting trial), and ``mlpsearch worker --jobs 1`` whole.

    python experiments/benchmarks/journal_size.py [--sizes 10000 100000] [--real 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from storage_scaling import EXPERIMENT  # noqa: E402

from mlpsearch import trials  # noqa: E402

NAME = "journal_size"


class MemoryBackend(BaseJournalBackend):
    """Optuna's journal records, kept in a list and saved at once as the file backend would."""

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int):
        yield from self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(logs)

    def save(self, path: Path, start: int = 0) -> None:
        with open(path, "ab") as f:
            for log in self.logs[start:]:
                f.write(json.dumps(log, separators=(",", ":")).encode() + b"\n")


def real_study(folder: Path, trials: int) -> Path:
    """A real study of ``trials`` one-epoch trials on a journal; its journal."""
    path = folder / "real.toml"
    path.write_text(EXPERIMENT.format(name=NAME, trials=trials, jobs=1))
    subprocess.run(
        [sys.executable, "-m", "mlpsearch", "run", str(path), "--out", str(folder / "real")],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return folder / "real" / NAME / "journal.log"


def waiting_like(t: FrozenTrial, user_attrs: dict[str, Any]) -> FrozenTrial:
    """A WAITING trial holding ``t``'s parameters, as the parent enqueues it (mlpsearch.study)."""
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=t.params,
        distributions=t.distributions,
        user_attrs=user_attrs,
    )


def write_like(storage: JournalStorage, study_id: int, t: FrozenTrial) -> None:
    """Write trial ``t`` again, call by call, as the parent and a worker write it."""
    enqueued = {k: t.user_attrs[k] for k in (trials.SLOT, trials.SEED)}
    trial_id = storage.create_new_trial(study_id, template_trial=waiting_like(t, enqueued))
    storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    for key, value in t.system_attrs.items():  # the worker's identity and heartbeat
        storage.set_trial_system_attr(trial_id, key, value)
    later = set(enqueued)
    for key, value in t.user_attrs.items():  # what the objective writes before training
        if key == trials.START:
            storage.set_trial_user_attr(trial_id, key, value)
            later.add(key)
    for step, value in t.intermediate_values.items():
        storage.set_trial_intermediate_value(trial_id, step, value)
    for key, value in t.user_attrs.items():  # ... and at the end
        if key not in later:
            storage.set_trial_user_attr(trial_id, key, value)
    storage.set_trial_state_values(trial_id, t.state, t.values)


def grow(real: Path, path: Path, n_trials: int) -> None:
    """A journal at ``path`` holding the real study's records and trials written like its
    trials up to ``n_trials`` finished trials, plus one WAITING trial."""
    from mlpsearch.storage import open_storage

    source = optuna.load_study(study_name=NAME, storage=open_storage(f"journal:{real}"))
    templates = [t for t in source.get_trials() if t.state == TrialState.COMPLETE]
    path.write_bytes(real.read_bytes())
    backend = MemoryBackend()
    backend.logs = [json.loads(line) for line in real.read_bytes().splitlines()]
    start = len(backend.logs)
    storage = JournalStorage(backend)
    study_id = storage.get_study_id_from_name(NAME)
    for i in range(n_trials - len(source.trials)):
        write_like(storage, study_id, templates[i % len(templates)])
    last = waiting_like(templates[0], {"slot": n_trials, "seed": 1})
    storage.create_new_trial(study_id, template_trial=last)
    backend.save(path, start)


def per_trial_records(path: Path, n_trials: int) -> list[tuple[str, float]]:
    """Bytes per trial of each kind of journal record, largest first."""
    names = {0: "create study", 4: "create trial (enqueue)", 5: "parameter",
             6: "state", 7: "epoch value", 2: "study attribute", 3: "study attribute"}  # fmt: skip
    sizes: Counter[str] = Counter()
    with open(path, "rb") as f:
        for line in f:
            log = json.loads(line)
            if "user_attr" in log:
                kind = f"user attr {next(iter(log['user_attr']))}"
            elif "system_attr" in log and log["op_code"] == 9:
                kind = f"system attr {next(iter(log['system_attr']))}"
            else:
                kind = names.get(log["op_code"], f"op {log['op_code']}")
            sizes[kind] += len(line)
    return [(k, v / n_trials) for k, v in sizes.most_common()]


WORKER_START = """
import sys, time
t = time.perf_counter()
import optuna
from mlpsearch.storage import open_storage
from mlpsearch import queries
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(sys.argv[1], create=False)
study = optuna.load_study(study_name=sys.argv[2], storage=storage)
opened = time.perf_counter()
trial_id = queries.claim_waiting(study, storage)
assert trial_id is not None
print(opened - t, time.perf_counter() - t)
"""


def measure(path: Path, folder: Path) -> dict[str, float]:
    url = f"journal:{path}"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlpsearch", "report", "--storage", url, "--study", NAME,
         "--out", str(folder / "report")],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    report = time.perf_counter() - started
    copy = folder / "worker.log"
    copy.write_bytes(path.read_bytes())  # the waiting trial stays waiting in the original
    out = subprocess.run(
        [sys.executable, "-c", WORKER_START, f"journal:{copy}", NAME],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    opened, claimed = (float(v) for v in out.stdout.split())
    copy.write_bytes(path.read_bytes())
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlpsearch", "worker", "--storage", f"journal:{copy}",
         "--study", NAME, "--jobs", "1"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    worker = time.perf_counter() - started
    return {"report": report, "opened": opened, "claimed": claimed, "worker": worker}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--real", type=int, default=20, help="real trials, the templates")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    print(
        f"journals built from a real study of {args.real} one-epoch trials: its finished "
        "trials written again through Optuna's JournalStorage API, as a worker writes them"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        real = real_study(folder, args.real)
        for n in args.sizes:
            path = folder / f"journal_{n}.log"
            started = time.perf_counter()
            grow(real, path, n)
            made = time.perf_counter() - started
            size = path.stat().st_size
            print(f"{n} trials: journal {size / 1e6:.1f} MB, {size / n:.0f} bytes per trial "
                  f"(made in {made:.0f} s)")  # fmt: skip
            if n == args.sizes[0]:
                for kind, per in per_trial_records(path, n)[:12]:
                    print(f"  {per:7.0f} B/trial  {kind}")
            rows.append((n, size, measure(path, folder)))
            path.unlink()
    print(f"{'trials':>7} {'MB':>6} {'report s':>9} {'open s':>7} {'claim s':>8} {'worker s':>9}")
    for n, size, m in rows:
        print(
            f"{n:>7} {size / 1e6:>6.1f} {m['report']:>9.1f} {m['opened']:>7.1f} "
            f"{m['claimed']:>8.1f} {m['worker']:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
