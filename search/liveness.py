"""Is a running trial's worker still alive? Heartbeats, stale trials, and their retries.

Optuna's journal storage has no heartbeat, so each running trial carries its worker's identity
and a heartbeat time in its system attributes. A RUNNING trial is *stale* when its worker is a
process of this host that no longer exists, or when its heartbeat is older than the grace
period. Stale trials are failed and re-queued with the same parameters, slot and seed by
Optuna's ``RetryHeartbeatStaleTrialCallback``. RDB storages use Optuna's own heartbeat instead
(timed by the database server, so the machines' clocks do not matter), with the same callback.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from mlpsearch import queries, trials

# fail_stale_trials and the retry callback are stable in practice but still flagged experimental
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

HEARTBEAT_SECONDS = 5  # how often a running trial says it is alive
GRACE_SECONDS = 60  # silence after which a trial of another host is taken for dead
CLAIM_GRACE_SECONDS = 15  # a claimed trial's worker names itself within milliseconds
MAX_RETRY = 3  # how often one configuration is re-queued after its worker died
# What a re-queued trial keeps of the one it replaces: its slot and seed, and for a
# confirmation trial which search trial and fresh seed it confirms (mlpsearch.confirm).
KEPT_ON_RETRY = (trials.SLOT, trials.SEED, trials.CONFIRM_OF, trials.CONFIRM_SEED)

WORKER_KEY = "mlpsearch:worker"  # "host:pid:start" of the process running the trial
BEAT_KEY = "mlpsearch:heartbeat"  # time.time() of the last heartbeat


def worker_identity() -> str:
    """``host:pid:start``: start (from /proc) tells a reused pid from the original process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    return _process(pid)[1]


def _process(pid: int) -> tuple[str, str]:
    """(state letter, start time) of process ``pid`` of this host, read from /proc at once;
    ("gone", "gone") when there is none, and start "zombie" for a zombie (it has finished)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], ("zombie" if fields[0] == "Z" else fields[19])
    except (OSError, IndexError):
        return "gone", "gone"


#: What :func:`judge` says of a trial's worker.
DEAD, RUNNING, STOPPED, ELSEWHERE = "dead", "running", "stopped", "elsewhere"


def judge(identity: str) -> str:
    """What is known of the worker ``identity`` (``host:pid:start``), from one look at /proc.

    :data:`DEAD`: a process of this host that no longer exists (its pid gone, a zombie, or
    reused by a later process); :data:`RUNNING`: alive here and not stopped (perhaps silent,
    held up by a lock or starved of the CPU, but it will finish or fail its trial itself);
    :data:`STOPPED`: alive here but stopped (SIGSTOP, Ctrl-Z, traced); :data:`ELSEWHERE`: a
    process of another host, known only by its heartbeat.
    """
    host, pid, start = identity.rsplit(":", 2)
    if host != socket.gethostname():
        return ELSEWHERE
    state, started = _process(int(pid))
    if started != start or state in ("Z", "X"):
        return DEAD
    return STOPPED if state in ("T", "t") else RUNNING


def is_dead(identity: str) -> bool:
    """Whether the worker ``identity`` is certainly dead (only knowable on its own host)."""
    return judge(identity) == DEAD


def is_running_here(identity: str) -> bool:
    """Whether the worker ``identity`` is a live process of this host that is not stopped."""
    return judge(identity) == RUNNING


class Heartbeat:
    """Marks a running trial as alive: at start, on :meth:`beat`, and from a thread."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._last = 0.0
        self.beat()  # before the identity: a trial with an identity always has a heartbeat
        storage.set_trial_system_attr(trial_id, WORKER_KEY, worker_identity())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def beat(self) -> None:
        now = time.time()
        if now - self._last < 1.0:  # epochs of small networks take milliseconds
            return
        self._last = now
        try:
            if isinstance(self.storage, RDBStorage):  # Optuna's, timed by the database
                self.storage.record_heartbeat(self.trial_id)
            else:
                self.storage.set_trial_system_attr(self.trial_id, BEAT_KEY, now)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._stop.set()  # somebody failed this trial as stale; nothing more to say

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception:  # a full disk, a lost connection: the trial's own writes say so
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Retry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, without what belonged to the dead run.

    The copy would otherwise inherit the dead worker's identity and last heartbeat (and look
    dead itself the moment a new worker claims it) and its failure reason.
    """

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.copy(trial)
        trial.system_attrs = {
            k: v for k, v in trial.system_attrs.items() if k not in (WORKER_KEY, BEAT_KEY)
        }
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in KEPT_ON_RETRY}
        super().__call__(study, trial)


def fail_stale(
    study: optuna.Study, storage: optuna.storages.BaseStorage, grace: float = GRACE_SECONDS
) -> list[int]:
    """Fail the RUNNING trials whose worker died and re-queue them; their numbers.

    A worker is dead when it is a process of this host that no longer exists (its trial's
    reason says "died", also where its heartbeat went stale before anyone looked), or (RDB)
    when Optuna's heartbeat, timed by the database server's clock, is older than the grace
    period, or (journal) when its own heartbeat is and it is not a running process of this
    host (a healthy worker whose heartbeat was held up is not failed; a stopped one is: "silent
    for N s"). Each failed trial says why in ``fail_reason``.
    """
    now = time.time()
    rdb = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None
    stale: dict[int, str] = {}
    if rdb:  # Optuna's heartbeat: what optuna.storages.fail_stale_trials looks at
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            stale[trial_id] = f"worker silent for over {grace:.0f} s (no heartbeat)"
    for trial in queries.running(study, storage):
        identity = trial.system_attrs.get(WORKER_KEY)
        if identity is None:  # claimed, and its worker not yet known (or it died naming itself)
            if trial._trial_id in stale:
                continue
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - started <= min(grace, CLAIM_GRACE_SECONDS):
                continue
            stale[trial._trial_id] = "worker never started the trial"
            continue
        worker = judge(identity)  # one look: a worker dying meanwhile is not called silent
        name = identity.rsplit(":", 1)[0]
        if worker == DEAD:  # also where its heartbeat went stale first: it died
            stale[trial._trial_id] = f"worker {name} died"
        elif trial._trial_id in stale:
            continue
        elif not rdb and worker != RUNNING:
            beat = trial.system_attrs.get(BEAT_KEY, now)
            if now - beat > grace:
                stale[trial._trial_id] = f"worker {name} silent for {now - beat:.0f} s"
    retry = Retry(max_retry=MAX_RETRY)
    failed = []
    for trial_id, reason in stale.items():
        trial = storage.get_trial(trial_id)
        if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRY:
            reason += f"; not re-queued again (already retried {MAX_RETRY} times)"
        else:
            reason += f"; {trials.REQUEUED}"
        try:
            storage.set_trial_user_attr(trial_id, trials.FAIL_REASON, reason)
            if reason.endswith(trials.REQUEUED):  # stopped from outside, not the trial's failure
                storage.set_trial_user_attr(trial_id, trials.INTERRUPTED, reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        retry(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed
