"""The Python API: ``mlpsearch.run``, ``mlpsearch.load``, ``mlpsearch.train`` and :class:`Study`.

The commands and these functions share every piece of work: ``run`` is ``mlpsearch run``,
``Study.report`` is ``mlpsearch report``, ``Study.rerun`` is ``mlpsearch rerun``, ``train`` is
``mlpsearch train``; progress shows the same way (a tqdm bar: a widget in a notebook). Errors are
the same exceptions the commands turn into one line (``mlpsearch.errors``).

    import mlpsearch

    study = mlpsearch.run("digits_random", n_trials=20)
    study.trials                     # one row per trial (pandas DataFrame)
    study.best                       # the best trial
    study.figure("history")          # any plot of the report, as a matplotlib Figure
    model = study.rerun(final=True).model
    model.predict(X_raw)             # the data's own labels
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait until they are used
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

    from mlpsearch.config import Experiment
    from mlpsearch.confirm import Estimate
    from mlpsearch.engine import Model
    from mlpsearch.rerun import RerunResult
    from mlpsearch.trials import TrialRecord


def experiment(spec: Any) -> Experiment:
    """An :class:`~mlpsearch.config.Experiment` from a path, a shipped name, a dict (the TOML
    document's tables) or an Experiment; ConfigError (one line) when it is not valid."""
    from mlpsearch.cli import find_experiment
    from mlpsearch.config import Experiment, load_experiment, parse_experiment
    from mlpsearch.errors import ConfigError

    if isinstance(spec, Experiment):
        return spec
    if isinstance(spec, dict):
        return parse_experiment(spec, source="<dict>")
    if isinstance(spec, str | os.PathLike):
        return load_experiment(find_experiment(str(spec)))
    raise ConfigError(
        f"experiment: expected a path, a name, a dict or an Experiment; got {type(spec).__name__}"
    )


def run(
    spec: Any = "digits_random",
    *,
    n_trials: int | None = None,
    jobs: int | None = None,
    seed: int | None = None,
    sampler: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    out: str | os.PathLike = "results",
    quiet: bool = False,
) -> Study:
    """Run (or resume, or extend) a study, as ``mlpsearch run`` does; the finished Study.

    ``spec``: an experiment file, a shipped experiment's name, a dict or an Experiment.
    ``quiet``: no progress and no lines (errors are still raised).
    """
    from mlpsearch.runner import run_study

    exp = experiment(spec).replace_study(
        name=name, n_trials=n_trials, n_jobs=jobs, seed=seed, sampler=sampler
    )
    result = run_study(
        exp,
        Path(out),
        storage_url=storage,
        echo=(lambda line: None) if quiet else print,
        resume_hint="the same mlpsearch.run(...) call",
        target=n_trials,
        bar=False if quiet else None,
    )
    url = storage or exp.study.storage or _default_url(Path(out), exp.study.name)
    return Study(result.study, result.folder, url)


def load(
    folder: str | os.PathLike | None = None,
    *,
    storage: str | None = None,
    study: str | None = None,
    out: str | os.PathLike = "results",
) -> Study:
    """Open a study: its results folder (``results/<study>``), or ``storage=URL, study=NAME``."""
    from mlpsearch.results_cli import locate_study, open_results

    args = (None if folder is None else str(folder), storage, study, Path(out))
    opened, where = open_results(*args)
    url, _, _ = locate_study(*args)
    return Study(opened, where, url)


def train(
    spec: Any,
    *,
    seed: int | None = None,
    save: str | os.PathLike | None = None,
    quiet: bool = True,
) -> Model:
    """Train the one configuration of an experiment whose hyperparameters are all fixed (a
    ``best.toml``), as ``mlpsearch train`` does; the trained :class:`~mlpsearch.engine.Model`
    (network, preprocessing, labels). ``save``: also write it to this ``.npz``."""
    from mlpsearch.engine import Model
    from mlpsearch.single import train_experiment

    exp = experiment(spec)
    done = train_experiment(exp, seed=seed, echo=None if quiet else print)
    model = Model.from_dataset(done.model, done.data)
    if save is not None:
        model.save(save)
    return model


@dataclass(frozen=True, eq=False)
class Study:
    """A study opened from its storage: its trials, its best trial, its plots, and the
    commands that act on it (``report``, ``rerun``, ``dashboard``)."""

    optuna: optuna.Study
    folder: Path
    storage: str

    @property
    def name(self) -> str:
        return self.optuna.study_name

    def __repr__(self) -> str:
        from mlpsearch.storage import mask

        n = len(self.optuna.get_trials(deepcopy=False))
        return f"Study({self.name!r}: {n} trials, storage {mask(self.storage)})"

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, as ``trials.csv`` holds them."""
        from mlpsearch.tables import trials_frame

        return trials_frame(self.optuna)

    @property
    def best(self) -> TrialRecord | None:
        """The best trial, as its record: where the study confirmed its best configurations on
        fresh seeds, the confirmed one with the lowest mean; else the best search trial (None
        while there is none). Its spread over seeds: :attr:`best_estimate`."""
        from mlpsearch.trials import records

        top = self.best_estimate
        if top is None:
            return None
        return next(r for r in records(self.optuna) if r.number == top.trial)

    @property
    def best_estimate(self) -> Estimate | None:
        """The best configuration's validation error over its seeds (:mod:`mlpsearch.confirm`):
        ``mean``, ``std``, ``n``, ``confirmed``."""
        from mlpsearch.confirm import best
        from mlpsearch.trials import records

        return best(records(self.optuna))

    @property
    def experiment(self) -> Experiment:
        """The experiment the study was created from."""
        from mlpsearch.trials import stored_experiment

        return stored_experiment(self.optuna)

    # --- plots -----------------------------------------------------------------------------

    @property
    def plots(self) -> list[str]:
        """The names of the plots of the report, in its order."""
        from mlpsearch.plots import PLOTS

        return list(PLOTS)

    def figure(self, name: str) -> Figure:
        """One plot of the report (see :attr:`plots`) as a matplotlib Figure."""
        from mlpsearch.plots import figure

        return figure(self.optuna, name)

    def figures(self) -> dict[str, Figure]:
        """Every plot of the report, by name."""
        return {name: self.figure(name) for name in self.plots}

    # --- what the commands do ---------------------------------------------------------------

    def report(self, top: int = 10, quiet: bool = True):
        """Write ``trials.csv``, ``plots/*.png`` and ``report.html`` (``mlpsearch report``)."""
        from mlpsearch.report import write_report

        return write_report(self.optuna, self.folder, top=top, echo=_echo(quiet))

    def rerun(
        self,
        trial: int | None = None,
        *,
        seeds: int = 0,
        final: bool = False,
        threads: int | None = None,
        quiet: bool = True,
    ) -> Rerun:
        """Re-train a trial (default: the best) as ``mlpsearch rerun`` does; with the models."""
        from mlpsearch.engine import Model
        from mlpsearch.rerun import rerun

        result = rerun(
            self.optuna,
            self.folder,
            trial=trial,
            seeds=seeds,
            final=final,
            threads=threads,
            echo=_echo(quiet),
        )
        final_model = result.files.get("final_model")
        return Rerun(
            result,
            Model.load(result.files["model"]),
            None if final_model is None else Model.load(final_model),
        )

    def dashboard(self, port: int = 0):
        """optuna-dashboard on this study's storage, from a thread; its ``.url``, ``.stop()``."""
        from mlpsearch.dashboard import Dashboard
        from mlpsearch.storage import open_storage

        return Dashboard(open_storage(self.storage), port)


@dataclass(frozen=True, eq=False)
class Rerun:
    """What :meth:`Study.rerun` found (``result``: reproduced, errors, files) and its models:
    ``model`` (best epoch) and ``final_model`` (trained on train + validation, with ``final``).
    """

    result: RerunResult
    best_model: Model
    final_model: Model | None

    @property
    def model(self) -> Model:
        """The final model where there is one, else the best epoch's."""
        return self.final_model or self.best_model

    def __getattr__(self, name: str) -> Any:  # reproduced, test_error, ... of the result
        return getattr(self.result, name)


def _echo(quiet: bool) -> Callable[[str], None]:
    return (lambda line: None) if quiet else print


def _default_url(out: Path, name: str) -> str:
    from mlpsearch.storage import default_url

    return default_url(out, name)
