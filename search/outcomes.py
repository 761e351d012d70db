"""How each trial ended, named the same way everywhere (run output, tables, report, summary).

Optuna knows COMPLETE, PRUNED, FAIL, RUNNING and WAITING. A FAIL is one of two things here:
the trial's own failure (it diverged, raised), or an *interruption*: its worker was killed,
Ctrl-C stopped the run, or it fell silent, and the trial was re-queued as a new trial with the
same parameters and seed. The stale-trial check marks the latter (``TrialRecord.interrupted``,
its reason); the retry names the trial it re-runs (``TrialRecord.retry_of``).
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import TrialState

from mlpsearch.trials import TrialRecord

__all__ = ["COUNTED", "counts", "label", "outcome", "retried_as"]

COUNTED = ("complete", "pruned", "failed", "interrupted")  # the outcomes a summary counts

_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def outcome(t: TrialRecord) -> str:
    """complete, pruned, failed, interrupted, running or waiting."""
    if t.state == TrialState.FAIL:
        return "interrupted" if t.interrupted or t.requeued else "failed"
    return _NAMES[t.state]


def retried_as(trials: Iterable[TrialRecord]) -> dict[int, int]:
    """Interrupted trial number -> the number of the trial that re-runs it."""
    return {t.retry_of: t.number for t in trials if t.retry_of is not None}


def label(t: TrialRecord, retries: dict[int, int]) -> str:
    """The outcome as shown to a reader: ``interrupted (re-run as trial 41)``."""
    name = outcome(t)
    if name == "interrupted" and t.number in retries:
        return f"interrupted (re-run as trial {retries[t.number]})"
    return name


def counts(trials: Iterable[TrialRecord]) -> dict[str, int]:
    """How many trials ended each way (every outcome of :data:`COUNTED`, zeros included)."""
    out = dict.fromkeys(COUNTED, 0)
    for t in trials:
        name = outcome(t)
        if name in out:
            out[name] += 1
    return out
