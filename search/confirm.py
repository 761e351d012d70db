"""Confirmation: the best configurations of a search re-trained on fresh seeds.

The best of many single-seed trials is partly luck: its validation error is biased low (the
search picked it *because* it came out low). After the search, the top ``k`` complete trials
are re-trained with ``s`` fresh seeds each, as *confirmation trials* of the same study:
WAITING trials enqueued with the configuration's parameters and tagged with the search trial
they confirm (``confirm_of``) and which fresh seed (``confirm_seed``, 1 to s). The study's
workers run them like any trial, so they are parallel, resumable and crash-safe (a killed one
is re-queued with its tags), shown in the progress, never pruned, and not counted in
``n_trials`` (they hold no slot).

The study's best is then the confirmed configuration with the lowest mean validation error
over its search seed and its fresh seeds, reported as mean ± sd (n), beside the search's
single-seed value; their difference, mean - search value, is the search's *optimism* (how much
too good the single-seed number looked).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mlpsearch import trials as stored
from mlpsearch.trials import CONFIRM_OF, CONFIRM_SEED, TrialRecord

__all__ = [
    "CONFIRM_OF",
    "CONFIRM_SEED",
    "Estimate",
    "best",
    "confirmation_seed",
    "enqueue",
    "estimates",
    "is_confirmation",
    "ranked",
    "search_trials",
]

TAGS = (CONFIRM_OF, CONFIRM_SEED)  # kept when a killed confirmation trial is re-queued


def is_confirmation(t: TrialRecord) -> bool:
    return t.is_confirmation


def search_trials(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The trials of the search itself (not confirmations)."""
    return [t for t in trials if not t.is_confirmation]


def confirmation_seed(search_seed: int, k: int) -> int:
    """The training seed of fresh seed ``k`` (1-based) of a trial trained with
    ``search_seed``. Disjoint from ``rerun --seeds`` (another stream of the same seed)."""
    return int(np.random.SeedSequence([search_seed, 2, k]).generate_state(1)[0])


@dataclass(frozen=True)
class Estimate:
    """A configuration's validation error over its seeds: the search trial's and the fresh
    ones of its complete confirmation trials."""

    trial: int  # the search trial
    params: dict[str, Any]
    search_value: float  # the search's single-seed value
    values: tuple[float, ...]  # search value first, then each complete confirmation's

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the seeds (None for a single seed)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def sem(self) -> float | None:
        std = self.std
        return None if std is None else std / math.sqrt(self.n)

    @property
    def optimism(self) -> float:
        """How much lower the search's value is than the mean over seeds (>= 0: lucky)."""
        return self.mean - self.search_value

    @property
    def confirmed(self) -> bool:
        return self.n > 1


def estimates(trials: Iterable[TrialRecord]) -> dict[int, Estimate]:
    """One estimate per complete search trial, with its complete confirmations."""
    trials = list(trials)
    fresh: dict[int, list[tuple[int, float]]] = {}
    for t in trials:
        if t.is_confirmation and t.state == TrialState.COMPLETE and t.value is not None:
            fresh.setdefault(t.confirms, []).append((t.confirm_seed or 0, t.value))
    out = {}
    for t in search_trials(trials):
        if t.state != TrialState.COMPLETE or t.value is None:
            continue
        seeds = [v for _, v in sorted(fresh.get(t.number, []))]
        out[t.number] = Estimate(t.number, dict(t.params), t.value, (t.value, *seeds))
    return out


def best(trials: Iterable[TrialRecord]) -> Estimate | None:
    """The study's best: the confirmed configuration with the lowest mean; the best search
    trial where nothing is confirmed yet."""
    found = estimates(trials)
    confirmed = [e for e in found.values() if e.confirmed]
    pool = confirmed or list(found.values())
    return min(pool, key=lambda e: (e.mean, e.trial)) if pool else None


def ranked(trials: Iterable[TrialRecord]) -> list[Estimate]:
    """Every complete configuration, in the order the report lists them: the confirmed ones
    first, by their mean over seeds, then the others by their single value (ties: the earlier
    trial). The first is :func:`best`."""
    found = estimates(trials)
    return sorted(found.values(), key=lambda e: (not e.confirmed, e.mean, e.trial))


def top_search(trials: Iterable[TrialRecord], k: int) -> list[TrialRecord]:
    """The ``k`` best complete search trials, best first (ties: the earlier trial)."""
    done = [
        t for t in search_trials(trials) if t.state == TrialState.COMPLETE and t.value is not None
    ]
    return sorted(done, key=lambda t: (t.value, t.number))[:k]


def enqueue(study: optuna.Study, top: int, seeds: int) -> int:
    """Enqueue the confirmation trials of the ``top`` best search trials that are missing
    (none waiting, running or complete for that seed); how many were enqueued. Run it under
    the planning lock so that parents started together enqueue each once."""
    if top <= 0 or seeds <= 0:
        return 0
    trials = stored.records(study)
    # Every (trial, seed) already tried: a killed one has its retry among them, and a failed
    # one (diverged) would fail again with the same seed.
    have = {(t.confirms, t.confirm_seed) for t in trials if t.is_confirmation}
    added = 0
    for t in top_search(trials, top):
        seed = t.seed
        if seed is None:
            continue
        for k in range(1, seeds + 1):
            if (t.number, k) in have:
                continue
            study.enqueue_trial(
                t.params,
                user_attrs={
                    CONFIRM_OF: t.number,
                    CONFIRM_SEED: k,
                    stored.SEED: confirmation_seed(int(seed), k),
                },
            )
            added += 1
    return added
