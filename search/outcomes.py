"""How each trial ended, named the same way everywhere (run output, tables, report, summary).

Optuna knows COMPLETE, PRUNED, FAIL, RUNNING and WAITING. A FAIL is one of two things here:
the trial's own failure (it diverged, raised), or an *interruption*: its worker was killed,
Ctrl-C stopped the run, or it fell silent, and the trial was re-queued as a new trial with the
same parameters and seed. :func:`mlpsearch.storage.fail_stale` marks the latter with the
``interrupted`` user attribute (its reason); the retry carries Optuna's ``failed_trial`` system
attribute naming the trial it re-runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

__all__ = ["COUNTED", "INTERRUPTED", "counts", "label", "outcome", "retried_as"]

INTERRUPTED = "interrupted"  # user attribute: why the trial was stopped and re-queued
COUNTED = ("complete", "pruned", "failed", "interrupted")  # the outcomes a summary counts

_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def outcome(t: FrozenTrial) -> str:
    """complete, pruned, failed, interrupted, running or waiting."""
    if t.state == TrialState.FAIL:
        reason = str(t.user_attrs.get("fail_reason", ""))
        interrupted = INTERRUPTED in t.user_attrs or reason.endswith("re-queued")
        return "interrupted" if interrupted else "failed"
    return _NAMES[t.state]


def retried_as(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Interrupted trial number -> the number of the trial that re-runs it."""
    return {
        int(t.system_attrs["failed_trial"]): t.number
        for t in trials
        if "failed_trial" in t.system_attrs
    }


def label(t: FrozenTrial, retries: dict[int, int]) -> str:
    """The outcome as shown to a reader: ``interrupted (re-run as trial 41)``."""
    name = outcome(t)
    if name == "interrupted" and t.number in retries:
        return f"interrupted (re-run as trial {retries[t.number]})"
    return name


def counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """How many trials ended each way (every outcome of :data:`COUNTED`, zeros included)."""
    out = dict.fromkeys(COUNTED, 0)
    for t in trials:
        name = outcome(t)
        if name in out:
            out[name] += 1
    return out
