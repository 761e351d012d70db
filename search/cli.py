"""The ``mlpsearch`` command.

Exit codes: 0 success, 1 a check failed or the run could not go on (disk full, database
gone; one line, finished trials are kept), 2 bad input (one line, no traceback, nothing
written), 130 interrupted (finished trials are kept; run the same command again to resume).
Storage passwords are masked in every message.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from collections.abc import Callable, Sequence
from pathlib import Path

from mlpsearch import __version__
from mlpsearch.errors import UsageError

DEFAULT_EXPERIMENT = "digits_random"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "handler"):
            parser.print_help()
            return 2
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("\nmlpsearch: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        return _fail(err)


def _fail(err: Exception) -> int:
    from mlpsearch.errors import exit_code
    from mlpsearch.storage import mask

    code = exit_code(err)
    if code is None:
        raise err
    message = mask(" ".join(str(err).split()))  # one line, whatever the message held
    print(f"\nmlpsearch: {message}" if code == 130 else f"mlpsearch: error: {message}",
          file=sys.stderr)  # fmt: skip
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlpsearch",
        description="Hyperparameter search for a numpy multi-layer perceptron.",
    )
    parser.add_argument("--version", action="version", version=f"mlpsearch {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run (or resume) a search study from an experiment file",
        description="Run a search study. Running the same command again resumes it; a larger "
        "--n-trials extends it. With no file, runs the default digits experiment.",
    )
    run.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment file or name in experiments/ (default: {DEFAULT_EXPERIMENT})",
    )
    run.add_argument("--n-trials", type=int, metavar="N", help="trials in the study")
    run.add_argument("--jobs", type=int, metavar="J", help="worker processes")
    run.add_argument("--seed", type=int, metavar="S", help="study seed")
    run.add_argument("--sampler", metavar="NAME", help="random, grid, tpe or qmc")
    run.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: journal file)")
    run.add_argument("--study", metavar="NAME", help="study name (default: from the file)")
    run.add_argument(
        "--out", metavar="DIR", default="results", help="results folder (default: results)"
    )
    run.set_defaults(handler=cmd_run)

    join = sub.add_parser(
        "worker",
        help="join an existing study (e.g. on another machine) and run its waiting trials",
        description="Join a study that 'mlpsearch run EXPERIMENT --storage URL' created, with "
        "the experiment stored in it, and run its waiting trials until none waits or runs "
        "anywhere (taking over those of workers that died). Start one per machine.",
    )
    join.add_argument("--storage", metavar="URL", required=True, help="Optuna storage URL")
    join.add_argument("--study", metavar="NAME", required=True, help="study name")
    join.add_argument(
        "--jobs", type=int, metavar="J", help="worker processes (default: the study's)"
    )
    join.set_defaults(handler=cmd_worker)

    train = sub.add_parser(
        "train",
        help="train one fixed configuration (e.g. a best.toml written by rerun)",
        description="Train the single configuration of an experiment file whose hyperparameters "
        "are all fixed, print its errors and save the model.",
    )
    train.add_argument("experiment", help="experiment file with fixed values")
    train.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed (default: the file's [train] seed, else its [study] seed)",
    )
    train.add_argument("--save", metavar="PATH", help="where to save the model (.npz)")
    train.set_defaults(handler=cmd_train)

    grad = sub.add_parser(
        "gradcheck",
        help="check backpropagation against numerical differentiation",
        description="Compare the gradients of a small random network, for every activation, "
        "with central differences in float64, and print the largest relative errors.",
    )
    grad.add_argument("--layers", type=int, default=2, help="hidden layers (default: 2)")
    grad.add_argument("--tol", type=float, default=1e-6, help="largest accepted relative error")
    grad.set_defaults(handler=cmd_gradcheck)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Other modules add their subcommands here: each entry takes the subparsers object.
def _results_commands(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.results_cli import register  # report, compare, rerun

    register(sub)


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_results_commands]


def find_experiment(name: str) -> Path:
    """A path as given, else a shipped experiment by name (``digits_random``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = resources.files("mlpsearch.experiments")
    for candidate in (shipped / name, shipped / f"{name}.toml"):
        if candidate.is_file():
            return Path(str(candidate))
    names = sorted(p.name[: -len(".toml")] for p in shipped.iterdir() if p.name.endswith(".toml"))
    raise UsageError(f"experiment file not found: {name} (shipped: {', '.join(names)})")


def _checked_int(value: int | None, flag: str, low: int) -> int | None:
    if value is not None and value < low:
        raise UsageError(f"{flag}: {value} must be >= {low}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    from mlpsearch.config import load_experiment
    from mlpsearch.runner import run_study
    from mlpsearch.storage import mask

    exp = load_experiment(find_experiment(args.experiment))
    exp = exp.replace_study(
        name=args.study,
        n_trials=_checked_int(args.n_trials, "--n-trials", 1),
        n_jobs=_checked_int(args.jobs, "--jobs", 1),
        seed=_checked_int(args.seed, "--seed", 0),
        sampler=args.sampler,
    )
    hint = "mlpsearch " + " ".join(mask(a) for a in sys.argv[1:])
    run_study(exp, Path(args.out), storage_url=args.storage, resume_hint=hint)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from mlpsearch.runner import join_study
    from mlpsearch.storage import mask

    jobs = _checked_int(args.jobs, "--jobs", 1)
    if jobs is not None and jobs > 64:
        raise UsageError(f"--jobs: {jobs} is out of range; allowed: 1 to 64")
    hint = "mlpsearch " + " ".join(mask(a) for a in sys.argv[1:])
    join_study(args.storage, args.study, jobs, resume_hint=hint)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mlpsearch.config import load_experiment
    from mlpsearch.single import train_experiment

    exp = load_experiment(find_experiment(args.experiment))
    run = train_experiment(exp, seed=args.seed, echo=print)
    h = run.history
    best = h.records[h.best_epoch - 1]
    print(
        f"{exp.study.name}: best epoch {h.best_epoch}: train error {best.train_error:.4f}, "
        f"validation error {best.val_error:.4f}; last epoch: validation error "
        f"{h.records[-1].val_error:.4f}"
    )
    save = Path(args.save) if args.save else Path("results") / exp.study.name / "model.npz"
    save.parent.mkdir(parents=True, exist_ok=True)
    run.model.save(save)
    print(f"model saved to {save}")
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    import numpy as np

    from mlpsearch.engine import ACTIVATIONS, MLP, gradcheck
    from mlpsearch.engine.hyperparameters import RULES

    why = RULES["hidden_layers"].problem(args.layers)
    if why is not None:
        raise UsageError(f"--layers: {why}")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 6))
    y = rng.integers(0, 3, size=16)
    worst = 0.0
    print(f"gradient check: 6-{'-'.join(['5'] * args.layers)}-3 network, float64, batch 16")
    for name in ACTIVATIONS:
        model = MLP([6, *[5] * args.layers, 3], name, dtype="float64", seed=1)
        err = gradcheck(model, X, y, weight_decay=1e-3)
        worst = max(worst, err)
        print(f"  {name:<11} max relative error {err:.2e}  {'ok' if err < args.tol else 'FAIL'}")
    print(f"largest: {worst:.2e} (tolerance {args.tol:.0e})")
    return 0 if worst < args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
