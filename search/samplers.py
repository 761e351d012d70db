"""The Optuna samplers of a study, built so that parallel workers never repeat a configuration.

Random and grid configurations are drawn in the parent (:mod:`mlpsearch.space`). QMC is not
adaptive either: its points depend on their index alone, so they are drawn in the parent too
(:func:`qmc_configs`), and a study's QMC configurations do not depend on how many workers ran
them. TPE is adaptive and samples in the workers; every worker builds the same sampler from the
study seed, so a plain seeded ``TPESampler`` would draw the same "random" candidates in every
worker and two trials started together would be identical. :class:`TrialSeeded` builds a fresh
sampler for each trial instead, seeded from the study seed and the trial number: two trials
never share a random stream, and one worker's study is reproducible from its seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from mlpsearch.config import Experiment

__all__ = ["TrialSeeded", "make_sampler", "qmc_configs", "trial_seed"]


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The sampler seed of one trial: its own stream of the study seed."""
    return int(np.random.SeedSequence([study_seed, trial_number, 3]).generate_state(1)[0])


def make_sampler(exp: Experiment) -> BaseSampler:
    """The sampler the workers use. Random, grid and QMC trials come enqueued with their
    parameters, so for them it only matters for a trial that was not (none, normally)."""
    seed = exp.study.seed
    if exp.study.sampler == "tpe":
        return TrialSeeded(_tpe, seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(seed: int) -> BaseSampler:
    with warnings.catch_warnings():  # "group" is an experimental argument
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: running trials count as bad, so workers spread out.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True
        )


class TrialSeeded(BaseSampler):
    """Delegates each trial to a sampler of its own, built by ``build(trial_seed(seed, n))``.

    Optuna calls ``before_trial`` first for every trial (``optuna.Trial.__init__``); one worker
    process runs one trial at a time, so the sampler built there serves that trial alone.
    """

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._current = build(seed)  # replaced before every trial

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._current = self._build(trial_seed(self._seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # seeds come from the trial numbers: nothing to reseed
        pass


def qmc_configs(exp: Experiment, n: int) -> list[dict[str, Any]]:
    """The searched parameters of slots ``0 .. n-1`` of a QMC search (scrambled Sobol, seeded
    by the study seed), drawn in order in a throwaway in-memory study: slot k's configuration
    does not depend on ``n``, so a study extended later keeps its first configurations."""
    from mlpsearch.space import suggest  # space imports config only; no cycle, but keep it lazy

    sampler = optuna.samplers.QMCSampler(
        seed=exp.study.seed,
        scramble=True,
        warn_independent_sampling=False,
        independent_sampler=optuna.samplers.RandomSampler(seed=exp.study.seed),
    )
    study = optuna.create_study(sampler=sampler)
    configs = []
    for _ in range(n):
        trial = study.ask()
        suggest(trial, exp.space)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs
