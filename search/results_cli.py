"""The result commands of ``mlpsearch``: ``report``, ``compare`` and ``rerun``.

Each names its study either as a results folder (``results/<study>``, holding the study's
``journal.log`` and ``experiment.toml``) or as ``--storage URL --study NAME``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpsearch.cli import checked_int, output_options

if TYPE_CHECKING:
    from mlpsearch.config import Experiment

STUDY_HELP = (
    "the study: its results folder (e.g. results/digits_random, or just digits_random), "
    "or leave it out and give --storage URL --study NAME"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report``, ``compare`` and ``rerun`` to the ``mlpsearch`` subcommands."""
    report = sub.add_parser(
        "report",
        help="write a study's trials.csv, plots and report.html; print the best trials",
        description="Write trials.csv (one row per trial), plots/*.png and a self-contained "
        "report.html into the study's results folder, and print the best trials. Running it "
        "twice gives identical files.",
    )
    report.add_argument("study", nargs="?", metavar="STUDY", help=STUDY_HELP)
    report.add_argument("--top", type=int, default=10, metavar="K", help="trials to list")
    study_options(report)
    output_options(report)
    report.set_defaults(handler=cmd_report)

    compare = sub.add_parser(
        "compare",
        help="plot some trials' learning curves side by side; list how they differ",
        usage="mlpsearch compare [STUDY] TRIAL [TRIAL ...] [--storage URL --study NAME]",
        description="Draw the learning curves (train and validation error per epoch) of the "
        "given trials side by side into plots/compare_<trials>.png, and print the "
        "parameters in which they differ and their results.",
    )
    compare.add_argument(
        "items", nargs="+", metavar="STUDY TRIAL", help=f"{STUDY_HELP}; then trial numbers"
    )
    study_options(compare)
    compare.set_defaults(handler=cmd_compare)

    rerun = sub.add_parser(
        "rerun",
        help="re-train the best (or a given) trial; check, test and export it",
        description="Re-train the best trial (or --trial N) with its stored seed and check "
        "that the validation error reproduces exactly (exit 1 if not). Saves the model and "
        "best.toml, a standalone experiment that 'mlpsearch train best.toml' runs without the "
        "study. BLAS is held to the thread count of the study's workers (cpu_count // n_jobs).",
    )
    rerun.add_argument("study", nargs="?", metavar="STUDY", help=STUDY_HELP)
    rerun.add_argument("--trial", type=int, metavar="N", help="trial number (default: the best)")
    rerun.add_argument(
        "--seeds",
        type=int,
        default=0,
        metavar="K",
        help="also train with K fresh seeds and report the mean and std of validation error",
    )
    rerun.add_argument(
        "--final",
        action="store_true",
        help="also train on train+validation and report the test error (the only use of the "
        "test set)",
    )
    rerun.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="BLAS threads (default: as the study's workers, cpu_count // n_jobs)",
    )
    study_options(rerun)
    output_options(rerun)
    rerun.set_defaults(handler=cmd_rerun)


def study_options(parser: argparse.ArgumentParser, writes: bool = True) -> None:
    """``--storage URL --study NAME`` (a study named by its storage) and ``--out DIR`` (where
    STUDY names are looked up and, for a command that ``writes``, its outputs go)."""
    parser.add_argument("--storage", metavar="URL", help="Optuna storage URL of the study")
    parser.add_argument("--study", dest="study_name", metavar="NAME", help="study name")
    where = "STUDY names are looked up" + (" and outputs go" if writes else "")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="results",
        help=f"results folder where {where} (default: results)",
    )


# --- handlers --------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from mlpsearch.console import print_json, printer
    from mlpsearch.errors import UsageError
    from mlpsearch.report import write_report

    if not 1 <= args.top <= 100_000:
        raise UsageError(f"--top: {args.top} is out of range; allowed: 1 to 100000")
    study, folder = open_results(args.study, args.storage, args.study_name, Path(args.out))
    with writing_results():
        report = write_report(study, folder, top=args.top, echo=printer(args.quiet or args.json))
        if args.json:
            print_json(
                {
                    "study": study.study_name,
                    "csv": str(report.csv),
                    "plots": [str(p) for p in report.plots],
                    "html": str(report.html),
                    "top": report.top.to_dict(orient="records"),
                }
            )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mlpsearch.compare import compare
    from mlpsearch.errors import UsageError

    items = list(args.items)
    if args.study_name or args.storage:  # then a leading non-number is a results folder
        study_arg = items.pop(0) if not _is_int(items[0]) else None
    else:
        study_arg = items.pop(0)
    if not items:
        raise UsageError("compare: give at least one trial number after the study")
    bad = [i for i in items if not _is_int(i)]
    if bad:
        raise UsageError(f"compare: {bad[0]!r} is not a trial number")
    study, folder = open_results(study_arg, args.storage, args.study_name, Path(args.out))
    make_results_folder(folder)
    with writing_results():
        compare(study, [int(i) for i in items], folder)
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from mlpsearch.console import print_json, printer
    from mlpsearch.rerun import rerun

    checked_int(args.seeds, "--seeds", 0, MAX_SEEDS)
    checked_int(args.threads, "--threads", 1, MAX_THREADS)
    study, folder = open_results(args.study, args.storage, args.study_name, Path(args.out))
    make_results_folder(folder)
    with writing_results():
        result = rerun(
            study,
            folder,
            trial=args.trial,
            seeds=args.seeds,
            final=args.final,
            threads=args.threads,
            echo=printer(args.quiet or args.json),
        )
        if args.json:
            print_json(
                {
                    "study": study.study_name,
                    "trial": result.trial,
                    "stored_val_error": result.stored,
                    "val_error": result.got,
                    "reproduced": result.reproduced,
                    "threads": result.threads,
                    "seed_errors": {str(k): v for k, v in result.seed_errors.items()},
                    "test_error": result.test_error,
                    "files": {k: str(v) for k, v in result.files.items()},
                }
            )
    return 0 if result.reproduced else 1


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


@contextmanager
def writing_results() -> Iterator[None]:
    """A file that cannot be written (a full disk, a read-only folder) is one line, exit 1;
    every result file is written whole or not at all, so nothing half-written is left."""
    from mlpsearch.errors import RunError

    try:
        yield
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        raise RunError(
            f"cannot write the results: {err.strerror or err}{where}; no file was left "
            "half-written (earlier results are as they were)"
        ) from None


MAX_SEEDS = 1000
MAX_THREADS = 1024


def make_results_folder(folder: Path) -> None:
    """Create ``folder`` (a study's results folder) if missing; one line if it cannot be."""
    from mlpsearch.errors import ConfigError

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"results folder {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"results folder {folder}: cannot be made ({err.strerror})") from None


# --- finding the study -----------------------------------------------------------------------


def open_results(
    study_arg: str | None, storage_url: str | None, study_name: str | None, out: Path
) -> tuple[Any, Path]:
    """The Optuna study and its results folder, from a folder or ``--storage``/``--study``.

    Any problem raises UsageError (a bad argument) or ConfigError with one line (exit 2).
    """
    import optuna

    from mlpsearch.errors import ConfigError
    from mlpsearch.storage import mask, open_storage

    url, name, folder = locate_study(study_arg, storage_url, study_name, out)
    storage = open_storage(url, read_only=True)  # a reader never creates or repairs
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        held = ", ".join(sorted(names)) or "no study"
        raise ConfigError(f"no study {name!r} in {mask(url)} (it holds: {held})")
    return optuna.load_study(study_name=name, storage=storage), folder


def locate_study(
    study_arg: str | None, storage_url: str | None, study_name: str | None, out: Path
) -> tuple[str, str, Path]:
    """(storage URL, study name, results folder) of a study named as :func:`open_results`
    takes it, without opening anything; UsageError or ConfigError (one line) if it cannot be
    found."""
    from mlpsearch.errors import ConfigError, UsageError

    if storage_url:
        if not study_name:
            raise UsageError("--storage needs --study NAME")
        folder = Path(study_arg) if study_arg else out / study_name
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"results folder {folder}: exists and is not a folder")
        url, name = storage_url, study_name
    else:
        if study_arg is None:
            if not study_name:
                raise UsageError(
                    "which study? give its results folder (e.g. results/NAME) or "
                    "--storage URL --study NAME"
                )
            study_arg = str(out / study_name)
        folder = _find_folder(study_arg, out)
        name = study_name or _name_in(folder)
        url = _url_in(folder)
    if url.startswith("journal:") and not Path(url.removeprefix("journal:")).is_file():
        raise ConfigError(f"no study journal at {url.removeprefix('journal:')}")
    return url, name, folder


def _find_folder(study_arg: str, out: Path) -> Path:
    from mlpsearch.errors import UsageError

    folder = Path(study_arg)
    if folder.is_dir():
        return folder
    if (out / study_arg).is_dir():
        return out / study_arg
    raise UsageError(
        f"study folder not found: {study_arg} (give results/NAME, a folder holding the "
        "study's journal.log, or --storage URL --study NAME)"
    )


def _name_in(folder: Path) -> str:
    """The study name in ``folder/experiment.toml``, else the folder's name."""
    exp = _folder_experiment(folder)
    return exp.study.name if exp is not None else folder.name


def _url_in(folder: Path) -> str:
    """The storage of the study in ``folder``: its journal, else what experiment.toml says."""
    from mlpsearch.errors import ConfigError

    journal = folder / "journal.log"
    if journal.is_file():
        return f"journal:{journal}"
    exp = _folder_experiment(folder)
    storage = exp.study.storage if exp is not None else None
    if storage is not None and "***" not in storage:
        return storage
    raise ConfigError(
        f"{folder} holds no journal.log"
        + (" and its storage URL has a masked password" if storage else "")
        + "; give --storage URL --study NAME"
    )


def _folder_experiment(folder: Path) -> Experiment | None:
    """The experiment the run wrote into ``folder`` (validated: ConfigError if broken), or None
    if there is none."""
    from mlpsearch.config import load_experiment

    path = folder / "experiment.toml"
    return load_experiment(path) if path.is_file() else None
