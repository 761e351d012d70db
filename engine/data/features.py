"""Raw features to predict on, as a file holds them: ``.csv``, ``.npz`` or an IDX image file.

Unlike :func:`load_dataset`, nothing is split or scaled (a model file does its own scaling) and
labels are optional: where the file has them, they are returned so that the caller can report
an accuracy.

- ``.csv``: a header row naming the columns; a column named ``label_column`` (if present) holds
  labels, numbers or words; every other column is a feature, matched by name.
- ``.npz``: array ``X`` (n, ...) and optionally ``y`` (n,).
- IDX (``*-idx3-ubyte``, gzipped or not): images; labels are read from the matching
  ``*-labels-idx1-ubyte`` beside it where there is one.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import DataError, read_idx

__all__ = ["Features", "npz_errors", "read_features"]


@dataclass(frozen=True, eq=False)
class Features:
    """Raw features ``X`` (n, ...) of a file, its labels ``y`` (n,) or None, column names."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...] | None
    source: str


def read_features(path: str | os.PathLike, label_column: str = "label") -> Features:
    """Read the features (and labels, where present) of a ``.csv``, ``.npz`` or IDX file.

    Raises
    ------
    DataError
        Missing, empty, unreadable or malformed file; one line naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    name = path.name.lower()
    if name.endswith(".csv"):
        return _csv(path, label_column)
    if name.endswith(".npz"):
        return _npz(path)
    if "idx" in name or "ubyte" in name:
        return _idx(path)
    raise DataError(f"{path}: expected a .csv, .npz or IDX (*-idx3-ubyte[.gz]) file")


def _csv(path: Path, label_column: str) -> Features:
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    columns = [c.strip().strip('"').strip("'").strip() for c in header.rstrip("\r\n").split(",")]
    if not header.strip():
        raise DataError(f"{path}: empty file (expected a header row)")
    if columns.count(label_column) > 1:
        raise DataError(f"{path}: several columns named {label_column!r} in the header")
    li = columns.index(label_column) if label_column in columns else None
    read = dict(delimiter=",", skiprows=1, ndmin=2, quotechar='"', encoding="utf-8-sig")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            converters = {li: lambda _: 0.0} if li is not None else None
            data = np.loadtxt(path, converters=converters, **read)
            y = None
            if li is not None and data.shape[0]:
                y = np.char.strip(np.loadtxt(path, usecols=[li], dtype=str, **read)[:, 0])
    except ValueError as e:
        reason = str(e).split(";")[0]
        raise DataError(f"{path}: {reason} (rows counted after the header)") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: a header but no data rows")
    if data.shape[1] != len(columns):
        raise DataError(f"{path}: the header has {len(columns)} columns, rows {data.shape[1]}")
    keep = [i for i in range(len(columns)) if i != li]
    names = tuple(columns[i] for i in keep)
    return Features(data[:, keep], y, names, f"{path} (.csv)")


@contextmanager
def npz_errors(path: Path) -> Iterator[None]:
    """Reading the .npz archive ``path``: what goes wrong is one DataError naming it (a
    DataError raised inside passes as it is)."""
    try:
        yield
    except DataError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds Python objects; save numeric arrays") from None
        raise DataError(f"{path}: unreadable .npz ({' '.join(str(e).split())})") from None


def _npz(path: Path) -> Features:
    with npz_errors(path), np.load(path, allow_pickle=False) as z:
        if "X" not in z.files:
            raise DataError(f"{path}: no array 'X' (found: {', '.join(z.files) or 'nothing'})")
        X = z["X"]
        y = z["y"] if "y" in z.files else None
    if y is not None and (y.ndim != 1 or len(y) != len(X)):
        raise DataError(f"{path}: y must have shape ({len(X)},), got {y.shape}")
    return Features(X, y, None, f"{path} (.npz)")


def _idx(path: Path) -> Features:
    images = read_idx(path)
    if images.ndim < 2:
        raise DataError(
            f"{path}: an IDX file of images (n, rows, cols), found shape {images.shape}"
        )
    y = None
    labels = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    if labels != path and labels.is_file():
        y = read_idx(labels)
        if y.ndim != 1 or len(y) != len(images):
            raise DataError(f"{labels}: {y.shape} labels for {len(images)} images in {path}")
    source = f"{path} (IDX{', labels from ' + labels.name if y is not None else ''})"
    return Features(images, y, None, source)
