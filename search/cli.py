"""The ``mlpsearch`` command.

Exit codes: 0 success, 1 a check failed or the run could not go on (disk full, database
gone; one line, finished trials are kept), 2 bad input (one line, no traceback, nothing
written), 130 interrupted by Ctrl-C, SIGTERM or SIGHUP, all three handled alike (finished
trials are kept and trials.csv written; run the same command again to resume).
Storage passwords are masked in every message.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from mlpsearch import __version__
from mlpsearch.errors import RunError, UsageError

DEFAULT_EXPERIMENT = "digits_random"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _register_urls(argv)
    _stop_on_signals()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "handler"):
            parser.print_help()
            return 2
        from mlpsearch.console import pipe_safe_stdout

        with pipe_safe_stdout():  # a closed pipe (| head) ends the output, not the work
            return args.handler(args) or 0
    except KeyboardInterrupt:
        _say("\nmlpsearch: interrupted")
        return 130
    except Exception as err:
        return _fail(err)


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal, ``kill``, a batch system's time limit) stop the
    program as Ctrl-C does: workers stopped, finished trials kept, one line, exit 130."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second one while stopping changes nothing
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), interrupt)


def _register_urls(argv: list[str]) -> None:
    """Every storage URL on the command line: its password is hidden from here on."""
    from mlpsearch.masking import register

    for i, arg in enumerate(argv):
        if arg == "--storage" and i + 1 < len(argv):
            register(argv[i + 1])
        elif arg.startswith("--storage="):
            register(arg.removeprefix("--storage="))


def _fail(err: Exception) -> int:
    import traceback

    from mlpsearch.errors import exit_code
    from mlpsearch.masking import mask

    code = exit_code(err)
    if code is None:  # a bug: its traceback, with any password hidden
        sys.stderr.write(mask("".join(traceback.format_exception(err))))
        return 1
    message = " ".join(mask(str(err)).split())  # one line, whatever the message held
    _say(f"\nmlpsearch: {message}" if code == 130 else f"mlpsearch: error: {message}")
    return code


def _say(line: str) -> None:
    """The last line on stderr; a terminal that hung up (SIGHUP) cannot take it."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


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
    run.add_argument(
        "--confirm-top",
        type=int,
        metavar="K",
        help="after the search, re-train the K best configurations on fresh seeds (0: off; "
        "default: the file's [study] confirm, else 5)",
    )
    run.add_argument(
        "--confirm-seeds",
        type=int,
        metavar="S",
        help="fresh seeds per confirmed configuration (default: the file's, else 3)",
    )
    run.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: journal file)")
    run.add_argument("--study", metavar="NAME", help="study name (default: from the file)")
    run.add_argument(
        "--out", metavar="DIR", default="results", help="results folder (default: results)"
    )
    output_options(run)
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


def output_options(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--json``: for scripts that want less output, or structured output."""
    parser.add_argument(
        "--quiet", action="store_true", help="print nothing but errors (on stderr)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print only one JSON object, the result, at the end"
    )


# Other modules add their subcommands here: each entry takes the subparsers object.
def _results_commands(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.results_cli import register  # report, compare, rerun

    register(sub)


def _predict_command(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.predict import register  # predict

    register(sub)


def _dashboard_command(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.dashboard import register  # dashboard

    register(sub)


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _results_commands,
    _predict_command,
    _dashboard_command,
]


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


def checked_int(value: int | None, flag: str, low: int, high: int | None = None) -> int | None:
    """``value`` (None: not given), or UsageError if it is below ``low`` or above ``high``."""
    if value is not None and value < low:
        raise UsageError(f"{flag}: {value} must be >= {low}")
    if value is not None and high is not None and value > high:
        raise UsageError(f"{flag}: {value} is out of range; allowed: {low} to {high}")
    return value


def resume_hint() -> str:
    """The command as typed (passwords masked): what to run again to resume."""
    from mlpsearch.masking import mask

    return "mlpsearch " + " ".join(mask(a) for a in sys.argv[1:])


def cmd_run(args: argparse.Namespace) -> int:
    from mlpsearch.config import Confirm, load_experiment
    from mlpsearch.console import print_json, printer
    from mlpsearch.masking import register
    from mlpsearch.runner import run_study

    exp = load_experiment(find_experiment(args.experiment))
    register(exp.study.storage)
    confirm = exp.study.confirm
    if args.confirm_top is not None or args.confirm_seeds is not None:
        confirm = Confirm(
            top=checked_int(args.confirm_top, "--confirm-top", 0) or 0
            if args.confirm_top is not None
            else confirm.top,
            seeds=checked_int(args.confirm_seeds, "--confirm-seeds", 1)
            if args.confirm_seeds is not None
            else confirm.seeds,
        )
    exp = exp.replace_study(
        confirm=confirm,
        name=args.study,
        n_trials=checked_int(args.n_trials, "--n-trials", 1),
        n_jobs=checked_int(args.jobs, "--jobs", 1),
        seed=checked_int(args.seed, "--seed", 0),
        sampler=args.sampler,
    )
    echo = printer(args.quiet or args.json)
    result = run_study(
        exp,
        Path(args.out),
        storage_url=args.storage,
        echo=echo,
        resume_hint=resume_hint(),
        target=args.n_trials,
        bar=False if args.quiet or args.json else None,
    )
    if args.json:
        print_json(run_summary(result))
    return 0


def run_summary(result) -> dict:
    """``run --json``: the study, its folder, its trials finished, its best trial."""
    best = result.best
    return {
        "study": result.study.study_name,
        "folder": str(result.folder),
        "finished": result.finished,
        "trials": len(result.study.get_trials(deepcopy=False)),
        "best": None
        if best is None
        else {
            "number": best.number,
            "val_error": best.value,
            "train_error": best.best_train_error,
            "params": best.params,
        },
    }


def cmd_worker(args: argparse.Namespace) -> int:
    from mlpsearch.config import MAX_JOBS
    from mlpsearch.runner import join_study

    jobs = checked_int(args.jobs, "--jobs", 1, MAX_JOBS)
    join_study(args.storage, args.study, jobs, resume_hint=resume_hint())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mlpsearch.config import load_experiment
    from mlpsearch.engine import Model
    from mlpsearch.single import train_experiment

    exp = load_experiment(find_experiment(args.experiment))
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed: {args.seed} is out of range; allowed: 0 to 2**32 - 1")
    save = Path(args.save) if args.save else Path("results") / exp.study.name / "model.npz"
    check_model_path(save, given=bool(args.save))
    run = train_experiment(exp, seed=args.seed, echo=print)
    h = run.history
    best = h.records[h.best_epoch - 1]
    print(
        f"{exp.study.name}: best epoch {h.best_epoch}: train error {best.train_error:.4f}, "
        f"validation error {best.val_error:.4f}; last epoch: validation error "
        f"{h.records[-1].val_error:.4f}"
    )
    try:
        save.parent.mkdir(parents=True, exist_ok=True)
        Model.from_dataset(run.model, run.data).save(save)  # with its scaling and labels
    except OSError as err:
        raise RunError(f"--save {save}: cannot write the model: {err.strerror or err}") from None
    print(f"model saved to {save}")
    return 0


def check_model_path(path: Path, given: bool) -> None:
    """Refuse, before training, a model path that is a folder, lies in a missing folder (when
    given), or is an existing file that is not an mlpsearch model (never overwritten)."""
    from mlpsearch.engine import MLP

    flag = "--save" if given else "the model file"
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name such as {path}/model.npz")
    if given and not path.parent.is_dir():
        what = "does not exist" if not path.parent.exists() else "is not a folder"
        raise UsageError(f"{flag} {path}: the folder {path.parent} {what}")
    if path.exists():
        try:
            MLP.load(path)
        except (ValueError, OSError):
            raise UsageError(
                f"{flag} {path}: exists and is not an mlpsearch model file; not overwritten"
            ) from None


def cmd_gradcheck(args: argparse.Namespace) -> int:
    import numpy as np

    from mlpsearch.engine import ACTIVATIONS, MLP, gradcheck
    from mlpsearch.engine.hyperparameters import RULES

    why = RULES["hidden_layers"].problem(args.layers)
    if why is not None:
        raise UsageError(f"--layers: {why}")
    if not 0 < args.tol < 1:  # also refuses nan
        raise UsageError(f"--tol: {args.tol} is out of range; allowed: 0 < tol < 1")
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
    # the fused softmax/cross-entropy gradient p - target, with a label-smoothed target
    model = MLP([6, *[5] * args.layers, 3], "tanh", dtype="float64", seed=1)
    err = gradcheck(model, X, y, weight_decay=1e-3, label_smoothing=0.1)
    worst = max(worst, err)
    ok = "ok" if err < args.tol else "FAIL"
    print(f"  {'tanh':<11} max relative error {err:.2e}  {ok}  (targets label-smoothed by 0.1)")
    print(f"largest: {worst:.2e} (tolerance {args.tol:.0e})")
    return 0 if worst < args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
