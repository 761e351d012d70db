"""``mlpsearch predict MODEL.npz DATA``: a saved model's predictions on new data.

The model file carries its preprocessing and labels (``mlpsearch.engine.model``), so DATA is
given raw, as the original data was (pixel values, a CSV's columns), and the predictions are the
data's own labels, numbers or words. Where DATA holds labels too, the accuracy is reported.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpsearch.console import print_json
from mlpsearch.engine import Model
from mlpsearch.engine.data.features import read_features
from mlpsearch.engine.files import write_atomic
from mlpsearch.errors import BadInput


@dataclass(frozen=True)
class Predictions:
    """What :func:`predict_file` found: labels (n,), probabilities (n, k) or None, accuracy."""

    labels: np.ndarray
    proba: np.ndarray | None
    class_labels: tuple[int | str, ...]
    accuracy: float | None  # where the data held labels
    correct: int | None
    n: int

    def table(self) -> str:
        """CSV text: a ``prediction`` column, then ``proba_<label>`` columns if computed."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        head = ["prediction"]
        if self.proba is not None:
            head += [f"proba_{label}" for label in self.class_labels]
        writer.writerow(head)
        for i, label in enumerate(self.labels.tolist()):
            row = [label]
            if self.proba is not None:
                row += [f"{p:.6g}" for p in self.proba[i]]
            writer.writerow(row)
        return out.getvalue()


def load_model(path: str | Path) -> Model:
    """The model file at ``path``; BadInput (one line) for anything else."""
    try:
        return Model.load(path)
    except ValueError as err:
        raise BadInput(str(err)) from None


def predict_file(
    model: Model, data: str | Path, *, proba: bool = False, label_column: str = "label"
) -> Predictions:
    """Predict the samples of the file ``data`` (.csv, .npz, IDX) with ``model``."""
    features = read_features(data, label_column=label_column)
    try:
        labels = model.predict(features.X, features.feature_names)
        probabilities = model.predict_proba(features.X, features.feature_names) if proba else None
    except ValueError as err:
        raise BadInput(f"{data}: {err}") from None
    accuracy = correct = None
    if features.y is not None:
        truth = model.codes(features.y)
        correct = int(np.sum(model.codes(labels) == truth))
        accuracy = correct / len(truth) if len(truth) else float("nan")
    return Predictions(labels, probabilities, model.labels, accuracy, correct, len(labels))


# --- the command ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    from mlpsearch.cli import output_options

    p = sub.add_parser(
        "predict",
        help="predict the labels of new data with a saved model",
        description="Apply a model file (best_model.npz or final_model.npz from 'mlpsearch "
        "rerun', or the file 'mlpsearch train' saves) to DATA, given raw as the original data "
        "was: the model scales it as its training part was scaled and answers with the data's "
        "own labels. DATA: .csv (header row; a 'label' column, if present, is used for the "
        "accuracy), .npz (X, optionally y) or an IDX image file (labels read from the "
        "matching labels file beside it). Predictions go to --out, or to stdout as CSV.",
    )
    p.add_argument("model", metavar="MODEL", help="model file (.npz)")
    p.add_argument("data", metavar="DATA", help="data file: .csv, .npz or IDX")
    p.add_argument("--out", metavar="CSV", help="write the predictions to this CSV file")
    p.add_argument("--proba", action="store_true", help="add one probability column per class")
    p.add_argument(
        "--label-column",
        default="label",
        metavar="NAME",
        help="a CSV's label column (default: label)",
    )
    output_options(p)
    p.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            raise BadInput(f"--out {out}: is a folder")
        if not out.parent.is_dir():
            raise BadInput(f"--out {out}: no folder {out.parent}")
        for given in (args.model, args.data):
            if Path(given).exists() and out.exists() and out.samefile(given):
                raise BadInput(f"--out {out}: would replace the input {given}")
    model = load_model(args.model)
    result = predict_file(model, args.data, proba=args.proba, label_column=args.label_column)
    if out is not None:
        write_atomic(out, result.table())
    summary = f"predicted {result.n} samples of {args.data} with {args.model}"
    if result.accuracy is not None:
        summary += (
            f"; accuracy {result.accuracy:.2%} ({result.correct}/{result.n}), test error "
            f"{1 - result.accuracy:.2%}, against the labels in the data"
        )
    if out is not None:
        summary += f"; wrote {out}"
    if args.json:
        doc = {
            "model": args.model,
            "data": args.data,
            "n": result.n,
            "accuracy": result.accuracy,
            "correct": result.correct,
            "out": str(out) if out else None,
        }
        if out is None:
            doc["predictions"] = result.labels.tolist()
            if result.proba is not None:
                doc["probabilities"] = np.round(result.proba, 6).tolist()
        print_json(doc)
        return 0
    if out is None:
        sys.stdout.write(result.table())
    if not args.quiet:
        print(summary, file=sys.stderr if out is None else sys.stdout)
    return 0
