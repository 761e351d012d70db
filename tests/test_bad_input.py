"""Malformed input, one table: experiment files, command-line flags, dataset files, storage URLs
and trial numbers. Every case, run as a user would (``python -m mlpsearch ...``), must exit 2
with exactly one line on stderr naming the problem, no traceback, and leave the working folder
(an existing finished study, its journal, its results) byte for byte as it was.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mlpsearch.config import dumps_toml
from mlpsearch.storage import mask

PASSWORD = "hunter2-Secret"

BASE = {
    "study": {"name": "base", "n_trials": 2, "n_jobs": 1, "seed": 5},
    "data": {"dataset": "digits"},
    "train": {"epochs": 3, "batch_size": 64},
    "space": {"units": {"low": 8, "high": 16}, "activation": ["relu", "tanh"]},
}


def experiment(**changes) -> str:
    """The base experiment as TOML, with sections updated (``section={key: value}``)."""
    doc = {k: dict(v) for k, v in BASE.items()}
    for section, values in changes.items():
        doc.setdefault(section, {}).update(values)
    return dumps_toml(doc)


FIXED = dumps_toml(
    {
        "study": {"name": "fixed", "seed": 1},
        "data": {"dataset": "digits"},
        "train": {"epochs": 2, "batch_size": 64},
        "space": {"units": 8},
    }
)


def new(**changes) -> str:
    """Like :func:`experiment`, for a study that does not exist yet."""
    study = {"name": "fresh", **changes.pop("study", {})}
    return experiment(study=study, **changes)


def npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npz_declaring(shape: tuple, dtype: str = "<f8") -> bytes:
    """An .npz whose X header declares ``shape`` while it stores 64 bytes."""
    import io
    import struct
    import zipfile

    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    array = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("X.npy", array)
        z.writestr("y.npy", npz_member(np.arange(10) % 2))
    return buf.getvalue()


def npz_member(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def idx_header(type_dims: bytes, *dims: int) -> bytes:
    import struct

    return b"\0\0" + type_dims + struct.pack(f">{len(dims)}I", *dims)


IDX_HUGE = {  # training images declaring 1e9 images of 4000x4000 pixels (16 PB), in 16 bytes
    "idx/train-images-idx3-ubyte": idx_header(b"\x08\x03", 10**9, 4000, 4000),
    "idx/train-labels-idx1-ubyte": idx_header(b"\x08\x01", 10**9),
    "idx/t10k-images-idx3-ubyte": idx_header(b"\x08\x03", 10, 28, 28) + bytes(7840),
    "idx/t10k-labels-idx1-ubyte": idx_header(b"\x08\x01", 10) + bytes(range(10)),
}


def sqlite_app() -> bytes:
    """An SQLite database of another program: one table of notes."""
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(f"{folder}/app.db")
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.commit()
        conn.close()
        return Path(f"{folder}/app.db").read_bytes()


SQLITE_APP = sqlite_app()


def append_line(line: str):
    """Appends ``line`` to the file it is given (a tampered journal)."""

    def append(path: Path) -> None:
        with open(path, "a") as f:
            f.write(line + "\n")

    return append


rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4))
y = np.arange(40) % 2
X_nan = X.copy()
X_nan[5, 1] = np.nan

# (id, arguments, files to write first {name: str | bytes}, words the error line must hold)
CASES = [
    # --- experiment files
    ("missing-file", ["run", "nope.toml"], {}, ["experiment file not found", "nope.toml"]),
    ("invalid-toml", ["run", "e.toml"], {"e.toml": "[study\nname = "}, ["invalid TOML"]),
    ("binary-file", ["run", "e.toml"], {"e.toml": b"\xff\xfe\x00\x01"}, ["not a text file"]),
    ("unknown-section", ["run", "e.toml"], {"e.toml": experiment(studdy={"a": 1})},
     ["[studdy]", "did you mean 'study'"]),
    ("unknown-key", ["run", "e.toml"], {"e.toml": new(study={"n_trails": 5})},
     ["study.n_trails", "did you mean 'n_trials'"]),
    ("zero-trials", ["run", "e.toml"], {"e.toml": new(study={"n_trials": 0})},
     ["study.n_trials", "out of range"]),
    ("string-trials", ["run", "e.toml"], {"e.toml": new(study={"n_trials": "ten"})},
     ["study.n_trials", "'ten' is not an integer"]),
    ("bad-sampler", ["run", "e.toml"], {"e.toml": new(study={"sampler": "bayes"})},
     ["study.sampler", "'bayes'"]),
    ("bad-name", ["run", "e.toml"], {"e.toml": experiment(study={"name": "../up"})},
     ["study.name", "'../up'"]),
    ("inverted-range", ["run", "e.toml"],
     {"e.toml": new(space={"learning_rate": {"low": 0.5, "high": 0.1}})},
     ["space.learning_rate", "inverted range"]),
    ("unknown-activation", ["run", "e.toml"], {"e.toml": new(space={"activation": ["swish"]})},
     ["space.activation[0]", "'swish'"]),
    ("log-range-at-zero", ["run", "e.toml"],
     {"e.toml": new(space={"units": {"low": 0, "high": 8, "log": True}})},
     ["space.units", "log range"]),
    ("empty-choices", ["run", "e.toml"], {"e.toml": new(space={"activation": []})},
     ["space.activation", "empty"]),
    ("val-fraction", ["run", "e.toml"], {"e.toml": new(data={"val_fraction": 1.5})},
     ["data.val_fraction", "1.5"]),
    ("python-in-experiment", ["run", "e.toml"],
     {"e.toml": "import os\nos.system('touch pwned')\n"}, ["e.toml", "invalid TOML"]),
    ("set-twice", ["run", "e.toml"], {"e.toml": new(train={"activation": "relu"})},
     ["space.activation", "also set in [train]"]),
    ("grid-float-range", ["run", "e.toml"], {"e.toml": new(study={"sampler": "grid"})},
     ["space.units", "grid sampler"]),
    ("changed-experiment", ["run", "e.toml"],
     {"e.toml": experiment(space={"activation": ["gelu"]})},
     ["study 'base' already exists with a different experiment", "space.activation"]),
    # --- command-line flags
    ("jobs-zero", ["run", "base.toml", "--jobs", "0"], {}, ["--jobs", "0"]),
    ("trials-not-int", ["run", "base.toml", "--n-trials", "abc"], {}, ["--n-trials", "'abc'"]),
    ("seed-negative", ["run", "base.toml", "--seed", "-1"], {}, ["--seed", "-1"]),
    ("sampler-flag", ["run", "base.toml", "--sampler", "bayes"], {}, ["study.sampler", "bayes"]),
    ("study-flag", ["run", "base.toml", "--study", "a b"], {}, ["study.name", "'a b'"]),
    ("unknown-flag", ["run", "base.toml", "--fast"], {}, ["unrecognized arguments: --fast"]),
    ("unknown-command", ["fly"], {}, ["invalid choice: 'fly'"]),
    ("out-is-a-file", ["run", "base.toml", "--out", "base.toml"], {}, ["not a folder"]),
    ("worker-no-study", ["worker", "--storage", "journal:results/base/journal.log"], {},
     ["--study"]),
    ("worker-jobs", ["worker", "--storage", "journal:results/base/journal.log", "--study",
                     "base", "--jobs", "0"], {}, ["--jobs", "0"]),
    ("gradcheck-layers", ["gradcheck", "--layers", "0"], {}, ["--layers", "out of range"]),
    # --- dataset files
    ("no-dataset-file", ["run", "e.toml"], {"e.toml": new(data={"dataset": "missing.npz"})},
     ["missing.npz", "no such file"]),
    ("unknown-dataset", ["run", "e.toml"], {"e.toml": new(data={"dataset": "cifar"})},
     ["unknown dataset 'cifar'"]),
    ("nan-in-data", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X_nan, y=y)},
     ["d.npz", "NaN"]),
    ("pickled-npz", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}),
      "d.npz": npz(X=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))},
     ["d.npz", "Python objects"]),
    ("not-a-zip", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": "X,y\n1,2\n"},
     ["d.npz", "not a .npz archive"]),
    ("npz-without-y", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X)}, ["d.npz", "'y'"]),
    ("npz-lengths", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X, y=y[:30])},
     ["d.npz", "mismatched lengths"]),
    ("one-class", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X, y=np.zeros(40, int))},
     ["d.npz", "only one class"]),
    ("csv-no-label", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,b\n1,2\n3,4\n"},
     ["d.csv", "'label'"]),
    ("csv-text-cell", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,label\n1,0\nx,1\n2,1\n"},
     ["d.csv"]),
    # --- storage URLs
    ("not-a-url", ["run", "e.toml", "--storage", "notaurl"], {"e.toml": new()},
     ["'notaurl' is not a storage URL"]),
    ("unknown-dialect", ["run", "e.toml", "--storage", "nosuchdb://h/x"], {"e.toml": new()},
     ["nosuchdb://h/x", "cannot open the storage"]),
    ("refused-connection", ["run", "e.toml", "--storage",
                            f"postgresql+psycopg2://u:{PASSWORD}@127.0.0.1:1/db"],
     {"e.toml": new()}, ["postgresql+psycopg2://u:***@127.0.0.1:1/db", "cannot open"]),
    ("journal-is-a-folder", ["run", "e.toml", "--storage", "journal:results"],
     {"e.toml": new()}, ["journal results", "not a file"]),
    ("journal-in-proc", ["run", "e.toml", "--storage", "journal:/proc/none/journal.log"],
     {"e.toml": new()}, ["/proc/none/journal.log", "cannot open"]),
    ("sqlite-no-folder", ["run", "e.toml", "--storage", "sqlite:////nonexistent/x/s.db"],
     {"e.toml": new()}, ["sqlite:////nonexistent/x/s.db", "cannot open"]),
    ("worker-unknown-study", ["worker", "--storage", "journal:results/base/journal.log",
                              "--study", "nope"], {}, ["no study 'nope'", "base"]),
    ("worker-journal-missing", ["worker", "--storage", "journal:results/x/journal.log",
                                "--study", "base"], {}, ["no journal file at results/x"]),
    ("networks-of-all-workers-too-big", ["run", "e.toml"],
     {"e.toml": new(study={"n_jobs": 64}, space={"hidden_layers": 2, "units": 20000})},
     ["64 worker(s)", "largest network", "GiB", "fewer jobs"]),
    ("toml-nested-too-deeply", ["run", "e.toml"],
     {"e.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n"}, ["e.toml", "nested too deeply"]),
    # --- sizes declared in data files, checked before anything is read or allocated
    ("npz-declares-terabytes", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz_declaring((10**7, 10**6))},
     ["d.npz", "(10000000, 1000000)", "72.8 TiB", "stores 64 bytes"]),
    ("npz-declares-negative", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz_declaring((-5, 4))},
     ["d.npz", "negative shape"]),
    ("npz-declares-huge-strings", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz_declaring((10, 4), "<U99999999")},
     ["d.npz", "14.9 GiB"]),
    ("idx-declares-terabytes", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "mnist", "data_dir": "idx"}), **IDX_HUGE},
     ["train-images-idx3-ubyte", "1000000000x4000x4000", "available"]),
    ("csv-latin1", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}),
      "d.csv": "caf\xe9,label\n".encode("latin-1") + b"1,0\n2,1\n" * 20},
     ["d.csv", "not UTF-8", "0xe9"]),
    ("csv-latin1-in-rows", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": b"a,label\n" + b"1,0\n2,1\n" * 20
      + b"\xe9,1\n"}, ["d.csv", "not UTF-8"]),
    ("csv-utf16", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,label\n1,0\n2,1\n".encode("utf-16")},
     ["d.csv", "not UTF-8"]),
    ("csv-1e309", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,label\n" + "1e309,0\n1,1\n" * 20},
     ["d.csv", "infinite"]),
    # --- train, compare, rerun, gradcheck flags
    ("train-seed-negative", ["train", "fixed.toml", "--seed", "-1"], {"fixed.toml": FIXED},
     ["--seed", "-1", "out of range"]),
    ("train-seed-huge", ["train", "fixed.toml", "--seed", str(2**40)], {"fixed.toml": FIXED},
     ["--seed", "out of range"]),
    ("train-save-missing-folder", ["train", "fixed.toml", "--save", "nope/m.npz"],
     {"fixed.toml": FIXED}, ["--save nope/m.npz", "nope does not exist"]),
    ("train-save-onto-folder", ["train", "fixed.toml", "--save", "results"],
     {"fixed.toml": FIXED}, ["--save results", "is a folder"]),
    ("train-save-under-a-file", ["train", "fixed.toml", "--save", "base.toml/m.npz"],
     {"fixed.toml": FIXED}, ["base.toml is not a folder"]),
    ("train-save-onto-a-user-file", ["train", "fixed.toml", "--save", "base.toml"],
     {"fixed.toml": FIXED}, ["base.toml", "not an mlpsearch model file; not overwritten"]),
    ("gradcheck-tol-nan", ["gradcheck", "--tol", "nan"], {}, ["--tol", "nan"]),
    ("rerun-seeds-huge", ["rerun", "results/base", "--seeds", str(10**12)], {},
     ["--seeds", "out of range"]),
    ("rerun-threads-huge", ["rerun", "results/base", "--threads", str(10**9)], {},
     ["--threads", "out of range"]),
    ("rerun-folder-is-a-file", ["rerun", "base.toml", "--storage",
                                "journal:results/base/journal.log", "--study", "base"], {},
     ["base.toml", "not a folder"]),
    ("report-top-huge", ["report", "results/base", "--top", str(10**20)], {}, ["--top"]),
    # --- files that are not ours: refused, never written into (the snapshot checks)
    ("journal-on-notes", ["run", "e.toml", "--storage", "journal:notes.txt"],
     {"e.toml": new(), "notes.txt": "my notes\nlast line without newline"},
     ["journal notes.txt", "not an Optuna journal", "not touched"]),
    ("journal-on-json", ["run", "e.toml", "--storage", "journal:c.json"],
     {"e.toml": new(), "c.json": '{"a": 1}\n{"b": 2}\n'}, ["c.json", "not an Optuna journal"]),
    ("journal-on-binary", ["run", "e.toml", "--storage", "journal:b.bin"],
     {"e.toml": new(), "b.bin": bytes(range(256)) * 4}, ["b.bin", "not an Optuna journal"]),
    ("report-journal-on-notes", ["report", "--storage", "journal:notes.txt", "--study", "base"],
     {"notes.txt": "hello\nworld"}, ["notes.txt", "not an Optuna journal"]),
    ("report-journal-missing", ["report", "--storage", "journal:nope.log", "--study", "base"],
     {}, ["no study journal at nope.log"]),
    ("run-sqlite-of-another-program", ["run", "e.toml", "--storage", "sqlite:///app.db"],
     {"e.toml": new(), "app.db": SQLITE_APP}, ["app.db", "another program", "notes"]),
    ("report-sqlite-of-another-program", ["report", "--storage", "sqlite:///app.db",
                                          "--study", "base"], {"app.db": SQLITE_APP},
     ["app.db", "no Optuna study tables", "notes"]),
    ("rerun-sqlite-of-another-program", ["rerun", "--storage", "sqlite:///app.db", "--study",
                                         "base"], {"app.db": SQLITE_APP}, ["no Optuna study"]),
    ("worker-sqlite-of-another-program", ["worker", "--storage", "sqlite:///app.db",
                                          "--study", "base"], {"app.db": SQLITE_APP},
     ["no Optuna study tables"]),
    ("report-sqlite-typo", ["report", "--storage", "sqlite:///typo.db", "--study", "base"], {},
     ["no database file at typo.db"]),
    ("compare-sqlite-typo", ["compare", "--storage", "sqlite:///typo.db", "--study", "base",
                             "0"], {}, ["no database file at typo.db"]),
    ("report-sqlite-text-file", ["report", "--storage", "sqlite:///notes.txt", "--study", "x"],
     {"notes.txt": "hello\n" * 200}, ["notes.txt", "not an SQLite database"]),
    # --- tampered journals: one line in every command
    *[(f"unknown-op-{cmd[0]}", cmd, {"results/base/journal.log": append_line('{"op_code": 99}')},
       ["journal results/base/journal.log", "unknown operation (op_code 99)"])
      for cmd in (["report", "results/base"], ["compare", "results/base", "0"],
                  ["rerun", "results/base"], ["run", "base.toml"],
                  ["worker", "--storage", "journal:results/base/journal.log", "--study", "base"])],
    ("stored-identity-a-string", ["run", "base.toml"],
     {"results/base/journal.log": append_line(
         '{"op_code": 2, "worker_id": "x", "study_id": 0, "user_attr": {"experiment": "s"}}')},
     ["study 'base'", "identity is damaged"]),
    ("journal-line-not-json", ["report", "results/base"],
     {"results/base/journal.log": append_line("hello world")}, ["record", "not JSON"]),
    ("journal-line-a-list", ["report", "results/base"],
     {"results/base/journal.log": append_line("[1, 2, 3]")}, ["not an Optuna journal record"]),
    ("journal-line-missing-fields", ["compare", "results/base", "0"],
     {"results/base/journal.log": append_line('{"op_code": 8, "worker_id": "x"}')},
     ["damaged or not Optuna's", "KeyError"]),
    # --- sizes and numbers at their edges (issue 11, items 6 and 7: more of each class)
    ("grid-units-1-to-512-x3", ["run", "e.toml"],
     {"e.toml": new(study={"sampler": "grid"}, space={
         "hidden_layers": 3, "units": {"low": 1, "high": 512, "step": 1},
         "activation": ["relu"]})},
     ["space", "grid has 1.34e+08 configurations", "at most 1000000"]),
    ("network-8-layers-of-65536", ["run", "e.toml"],
     {"e.toml": new(space={"hidden_layers": 8, "units": 65536})},
     ["largest network", "65536 units", "GiB of memory"]),
    ("step-1e-300", ["run", "e.toml"],
     {"e.toml": new(space={"learning_rate": {"low": 0.01, "high": 0.1, "step": 1e-300}})},
     ["space.learning_rate.step", "at most 1000000"]),
    ("momentum-one", ["run", "e.toml"], {"e.toml": new(train={"momentum": 1.0})},
     ["train.momentum", "1.0 is out of range"]),
    ("dropout-one", ["run", "e.toml"], {"e.toml": new(train={"dropout": 1.0})},
     ["train.dropout", "out of range"]),
    ("weight-decay-nan", ["run", "e.toml"],
     {"e.toml": new().replace("[train]\n", "[train]\nweight_decay = nan\n")},
     ["train.weight_decay", "not a finite number"]),
    ("learning-rate-to-inf", ["run", "e.toml"],
     {"e.toml": new(space={"learning_rate": {"low": 0.1, "high": float("inf")}})},
     ["space.learning_rate.high", "not a finite number"]),
    ("batch-size-zero", ["run", "e.toml"], {"e.toml": new(train={"batch_size": 0})},
     ["train.batch_size", "out of range"]),
    ("batch-size-a-billion", ["run", "e.toml"], {"e.toml": new(train={"batch_size": 10**9})},
     ["train.batch_size", "out of range"]),
    ("epochs-a-billion", ["run", "e.toml"], {"e.toml": new(train={"epochs": 10**9})},
     ["train.epochs", "out of range"]),
    ("units-zero", ["run", "e.toml"], {"e.toml": new(space={"units": 0})},
     ["space.units", "out of range"]),
    ("trials-a-million", ["run", "e.toml"], {"e.toml": new(study={"n_trials": 10**6})},
     ["study.n_trials", "out of range"]),
    ("seed-2-to-the-32", ["run", "e.toml"], {"e.toml": new(study={"seed": 2**32})},
     ["study.seed", "out of range"]),
    ("jobs-a-thousand", ["run", "e.toml", "--jobs", "1000"], {"e.toml": new()},
     ["n_jobs", "1000", "out of range"]),
    ("confirm-a-million-seeds", ["run", "e.toml"],
     {"e.toml": new(study={"confirm": {"top": 2, "seeds": 10**6}})},
     ["study.confirm.seeds", "out of range"]),
    ("val-fraction-zero", ["run", "e.toml"], {"e.toml": new(data={"val_fraction": 0.0})},
     ["data.val_fraction", "out of range"]),
    ("study-name-empty", ["run", "e.toml"], {"e.toml": new(study={"name": ""})},
     ["study.name", "not a valid study name"]),
    ("toml-with-bom", ["run", "e.toml"], {"e.toml": b"\xef\xbb\xbf" + new().encode()},
     ["e.toml", "invalid TOML"]),
    ("report-top-zero", ["report", "results/base", "--top", "0"], {}, ["--top", "out of range"]),
    ("dashboard-port-70000", ["dashboard", "results/base", "--port", "70000"], {},
     ["--port", "out of range"]),
    ("gradcheck-layers-10000", ["gradcheck", "--layers", "10000"], {},
     ["--layers", "out of range"]),
    # --- data arrays that are not a feature table
    ("npz-complex-features", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X.astype(complex), y=y)},
     ["d.npz", "numeric", "complex128"]),
    ("npz-text-features", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X.astype(str), y=y)},
     ["d.npz", "numeric"]),
    ("npz-fractional-labels", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X, y=y + 0.5)},
     ["d.npz", "integers", "0.5"]),
    ("npz-infinite-feature", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=np.where(X > 1.5, np.inf, X), y=y)},
     ["d.npz", "infinite"]),
    ("npz-labels-2d", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X, y=np.stack([y, y], 1))},
     ["d.npz", "shape"]),
    ("npz-no-features", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=np.zeros((40, 0)), y=y)},
     ["d.npz", "empty data"]),
    ("npz-three-rows", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.npz"}), "d.npz": npz(X=X[:3], y=np.arange(3))},
     ["too few samples (3)"]),
    ("csv-header-only", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,b,label\n"}, ["d.csv", "empty"]),
    ("csv-ragged-rows", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv"}), "d.csv": "a,b,label\n" + "1,2,0\n3,1\n" * 20},
     ["d.csv", "number of columns changed"]),
    ("csv-label-column-empty-name", ["run", "e.toml"],
     {"e.toml": new(data={"dataset": "d.csv", "label_column": ""}),
      "d.csv": "a,label\n1,0\n2,1\n" * 20}, ["d.csv", "no column named ''"]),
    # --- storages that are not files of ours
    ("journal-empty-path", ["run", "e.toml", "--storage", "journal:"], {"e.toml": new()},
     ["not a file"]),
    ("journal-on-dev-null", ["run", "e.toml", "--storage", "journal:/dev/null"],
     {"e.toml": new()}, ["journal /dev/null", "not a file"]),
    ("sqlite-on-a-folder", ["run", "e.toml", "--storage", "sqlite:///results"],
     {"e.toml": new()}, ["sqlite:///results", "not a file"]),
    ("out-under-dev-null", ["run", "e.toml", "--out", "/dev/null"], {"e.toml": new()},
     ["/dev/null is not a folder"]),
    ("predict-a-toml-as-model", ["predict", "base.toml", "d.npz"],
     {"d.npz": npz(X=X, y=y)},
     ["base.toml", "not a usable mlpsearch model file: not an .npz archive"]),
    # --- trial numbers
    ("rerun-no-trial", ["rerun", "results/base", "--trial", "99"], {}, ["trial 99"]),
    ("rerun-negative", ["rerun", "results/base", "--trial", "-1"], {}, ["trial -1"]),
    ("rerun-not-int", ["rerun", "results/base", "--trial", "one"], {}, ["--trial", "'one'"]),
    ("compare-not-int", ["compare", "results/base", "0", "abc"], {}, ["'abc'"]),
    ("compare-no-trial", ["compare", "results/base", "0", "77"], {}, ["77"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def base_study(tmp_path_factory, cli) -> Path:
    """A folder with base.toml and its finished 2-trial study in results/base."""
    folder = tmp_path_factory.mktemp("base")
    (folder / "base.toml").write_text(experiment())
    r = cli("run", "base.toml", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".flock")  # lock files: empty, made on open
    }


def test_case_table_covers_every_kind():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def outcomes(request, base_study, tmp_path_factory, cli) -> dict[str, tuple]:
    """The selected cases, each run in its own copy of ``base_study``, as many at a time as
    there are cores (the runs are independent): id -> (result, files before, files after)."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_line_exit_2_and_changes_nothing"
    }
    folders = {}
    for case_id, _, files, _ in CASES:
        if case_id not in selected:
            continue
        work = tmp_path_factory.mktemp(case_id) / "w"
        shutil.copytree(base_study, work)
        for name, content in files.items():
            if callable(content):  # changes an existing file: content(path)
                content(work / name)
                continue
            mode = "wb" if isinstance(content, bytes) else "w"
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            with open(work / name, mode) as f:
                f.write(content)
        folders[case_id] = work

    def run(case_id: str) -> tuple:
        args, work = next(c[1] for c in CASES if c[0] == case_id), folders[case_id]
        before = snapshot(work)
        return cli(*args, cwd=work), before, snapshot(work)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(folders, pool.map(run, folders), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case_id, words", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(outcomes, case_id, words):
    r, before, after = outcomes[case_id]
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("mlpsearch: error: ")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert PASSWORD not in r.stderr + r.stdout
    assert after == before  # no partial result, the study untouched


# --- security: user files are data, passwords are never shown -------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgresql+psycopg2://u:s3cret@db.host:5432/opt", "postgresql+psycopg2://u:***@db.host:5432/opt"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),  # unencoded @
        ("postgresql://u:pa/ss@host/db", "postgresql://u:***@host/db"),  # unencoded /
        ("mysql+pymysql://root:pw@h/x?charset=utf8", "mysql+pymysql://root:***@h/x?charset=utf8"),
        ("postgresql://h/db?user=u&password=s3cret", "postgresql://h/db?user=u&password=***"),
        ("cannot open postgresql://u:s3cret@h/db: refused",
         "cannot open postgresql://u:***@h/db: refused"),
        ("resume with: mlpsearch run e.toml --storage postgresql://u:s3cret@h/db --jobs 2",
         "resume with: mlpsearch run e.toml --storage postgresql://u:***@h/db --jobs 2"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # no password: unchanged
        ("sqlite:///a:b@c.db", "sqlite:///a:b@c.db"),
        ("journal:results/x/journal.log", "journal:results/x/journal.log"),
    ],
)  # fmt: skip
def test_mask_hides_every_password(text, shown):
    assert mask(text) == shown


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield owner, name, node


def test_no_user_file_is_unpickled_or_executed(root):
    """Every reader of files: numpy without pickles (np.load's default, never overridden), no
    pickle/joblib/marshal loads, no exec or eval; experiment files are read with tomllib."""
    assert inspect.signature(np.load).parameters["allow_pickle"].default is False
    sources = sorted((root / "engine").rglob("*.py")) + sorted((root / "search").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for owner, name, node in calls(tree):
            where = f"{path.name}:{node.lineno}"
            if owner in ("np", "numpy") and name == "load":
                for kw in node.keywords:
                    assert not (
                        kw.arg == "allow_pickle" and getattr(kw.value, "value", 0) is not False
                    ), where
            assert not (owner in ("pickle", "joblib", "marshal", "cloudpickle", "dill")
                        and name in ("load", "loads")), where  # fmt: skip
            assert name not in ("exec", "eval", "run_path") or owner, where
    config = (root / "search" / "config.py").read_text()
    assert "tomllib.loads(" in config
