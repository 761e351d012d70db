"""Datasets: the embedded digits, the MNIST family, and users' own ``.npz`` / ``.csv`` files.

``load_dataset(name_or_path)`` returns a :class:`Dataset` of float32 features and int64 labels
0..n_classes-1, split into a training part, a validation part (a seeded, stratified split of the
training data) and a test part kept apart for re-running a final configuration.

Sources
-------
``"digits"`` (the default, no download)
    The 1,797 8x8 handwritten digits that scikit-learn ships: the test part of the UCI "Optical
    Recognition of Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998; UCI Machine
    Learning Repository, https://doi.org/10.24432/C50P49, CC BY 4.0), via scikit-learn's
    ``load_digits``, stored in ``engine/digits.npz`` as uint8 values 0..16 by
    ``scripts/make_digits.py``. It has no
    official test split: a stratified 20% is held out with a fixed seed, which gives 1,150
    training / 288 validation / 359 test samples at the default ``val_fraction=0.2``.
``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``
    The four standard IDX files (gzipped or not), searched in order in: ``data_dir/<name>/`` and
    ``data_dir`` itself; ``$MLPSEARCH_DATA/<name>/`` (a root of per-dataset folders; not the
    root itself, since all three datasets use the same file names); the cache
    ``<cache>/<name>/``; ``/usr/share/datasets/fashion-mnist/`` (Debian's
    ``dataset-fashion-mnist``) for Fashion-MNIST. A folder with only some of the files stops the
    search with an error saying which are missing. Otherwise the files are downloaded into the
    cache (see ``engine.data.download``), unless ``MLPSEARCH_OFFLINE`` is set. Files found on disk
    are checked by their structure (``engine.data.idx``: magic number, sizes, label range), not by
    checksum, so re-compressed copies such as Debian's load; downloads are checked against the
    published MD5. The official 60,000 / 10,000 split is kept: 48,000 / 12,000 / 10,000 at
    the default ``val_fraction``.
a path to ``.npz`` or ``.csv``
    ``.npz``: arrays ``X`` (n, ...) and ``y`` (n,), read with ``allow_pickle=False``; optional
    ``X_test`` / ``y_test`` are used as the test part. ``.csv``: comma-separated, one header row,
    labels in the column named ``label_column``, every other column a feature (the header names
    them: ``Dataset.feature_names``). Labels are integers (any values) or text (words); they are
    mapped to 0..k-1 in sorted order and the original values kept (``Dataset.labels``, and as
    strings ``Dataset.classes``). Without an explicit test part, 20% is held out with a fixed
    seed.

Scaling (fitted on the training part only)
------------------------------------------
``"unit"``: images are divided by their format's maximum (16 for digits, 255 for IDX files);
user data is min-max scaled per feature to [0, 1]. ``"standard"``: per-feature mean 0 and
standard deviation 1; a feature that is constant in the training part is only centred.
``"none"``: values as they are, as float32. Validation and test parts reuse the training part's
statistics, so they may fall slightly outside [0, 1].

Cache and sharing
-----------------
The cache root is ``$MLPSEARCH_CACHE`` or ``~/.cache/mlpsearch``: downloads go to
``<cache>/<name>/``. A dataset whose features exceed :data:`LARGE_BYTES` (10 MiB as float32) is
prepared once into ``<cache>/prepared/<name>-<key>/`` (``X_train.npy``, ``y_train.npy``,
``X_val.npy``, ``y_val.npy``, ``X_test.npy``, ``y_test.npy``, ``meta.json``), where ``key`` hashes
the source files' path, size and mtime, ``val_fraction``, ``seed``, ``scale`` and
``label_column``. One worker builds it (a ``flock`` on ``.<name>-<key>.lock`` makes the others
wait, at most :data:`BUILD_LOCK_SECONDS`: past that each uses its data in memory, unshared)
under a temporary name and renames it, so concurrent workers never see half of it; every
call then returns read-only memory maps of it, and worker processes share the same page-cache
pages instead of each holding a copy. A changed source file gets a new key; old folders are not
deleted automatically (about 220 MB each for the MNIST family). All returned arrays are
read-only.

Environment
-----------
``MLPSEARCH_CACHE`` (cache root), ``MLPSEARCH_DATA`` (root of ``<name>/`` folders of IDX
files), ``MLPSEARCH_OFFLINE`` (any value: never download), ``MLPSEARCH_MIRROR`` (base URL
replacing the public mirrors, see ``engine.data.download``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np

from ..files import FileLock, file_lock, write_atomic
from ..memory import available_bytes, describe_bytes
from ..scaling import Scaling, nonfinite
from . import download
from .features import npz_errors
from .idx import DataError, read_image_label_pair

__all__ = ["DataError", "Dataset", "load_dataset", "stratified_split", "cache_root", "NAMES"]

NAMES = ("digits", "mnist", "fashion-mnist", "kmnist")
SCALES = ("unit", "standard", "none")
#: Share of users' data (and digits) held out as the test part, with the fixed seed TEST_SEED.
TEST_FRACTION = 0.2
TEST_SEED = 20_231_117
#: Feature arrays larger than this (in float32 bytes) are prepared once as memory-mapped .npy.
LARGE_BYTES = 10 * 2**20
#: Longest wait for another worker building the same prepared folder (a few seconds normally).
BUILD_LOCK_SECONDS = 300.0
#: System folders searched after the cache, per dataset.
SYSTEM_DIRS: dict[str, list[str]] = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}

CLASS_NAMES = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),  # fmt: skip
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
_IDX_ROLES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}
_PARTS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_FORMAT_VERSION = 2  # 2: meta.json holds the scaling, the labels and the feature names
_CHUNK_ROWS = 4096
#: Values beyond this magnitude are divided by a power of two before scaling, so that no
#: difference or square overflows float64 (finite features near 1.7e308 stay finite).
_HUGE = 2.0**500


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Features and labels, split into training, validation and test parts.

    Attributes
    ----------
    name : dataset name ("digits", "mnist", ...) or the user file's stem.
    X_train, X_val, X_test : float32 arrays, shapes (n_train, n_features), (n_val, n_features),
        (n_test, n_features); read-only (memory maps for large datasets).
    y_train, y_val, y_test : int64 arrays of shape (n,), values 0..n_classes-1.
    classes : class names, ``classes[k]`` names label k.
    n_features, n_classes : input and output sizes of a network for this data.
    source : one line saying where the data came from.
    scaling : the scaling fitted on the training part (applied to every part).
    labels : the labels as they were in the data, ``labels[k]`` for label k: int or str.
    feature_names : names of the features (a CSV file's header), or None.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    n_features: int
    n_classes: int
    source: str
    scaling: Scaling
    labels: tuple[int | str, ...]
    feature_names: tuple[str, ...] | None

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {len(self.y_train)} train / {len(self.y_val)} val / "
            f"{len(self.y_test)} test, {self.n_features} features, {self.n_classes} classes)"
        )

    def fingerprint(self) -> dict[str, object]:
        """What identifies this data: its parts' shapes, its classes and a content hash.

        JSON-able; equal for the same data however it was loaded (memory-mapped or not).
        """
        return {
            "shapes": {p: list(getattr(self, p).shape) for p in _PARTS},
            "classes": list(self.classes),
            "sha256": content_hash(self),
        }


def content_hash(ds: Dataset) -> str:
    """SHA-256 of every part's dtype, shape and bytes (in chunks: memory maps stay mapped)."""
    digest = hashlib.sha256()
    for part in _PARTS:
        arr = getattr(ds, part)
        digest.update(f"{part}:{arr.dtype.str}:{arr.shape}".encode())
        for start in range(0, len(arr), _CHUNK_ROWS * 4):
            digest.update(np.ascontiguousarray(arr[start : start + _CHUNK_ROWS * 4]).data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Public entry point


def load_dataset(
    name_or_path: str | os.PathLike = "digits",
    *,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    scale: str = "unit",
    label_column: str = "label",
) -> Dataset:
    """Load a dataset by name or path, split and scaled.

    Parameters
    ----------
    name_or_path : "digits", "mnist", "fashion-mnist", "kmnist", or a path to a .npz / .csv file.
    data_dir : folder searched first for the MNIST-family files (``data_dir/<name>/`` and
        ``data_dir``); for a relative file path not found from the working directory, the
        folder it is looked up in.
    val_fraction : share of the training data held out for validation, 0 < f < 1.
    seed : seed of the validation split (the test part never depends on it).
    scale : "unit", "standard" or "none" (see the module docstring).
    label_column : name of the label column of a .csv file.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown name, bad argument, missing, damaged or invalid data; one line.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float | np.number):
        val_fraction_ok = False
    else:
        val_fraction_ok = 0.0 < float(val_fraction) < 1.0
    if not val_fraction_ok:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    if scale not in SCALES:
        raise DataError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    val_fraction, seed = float(val_fraction), int(seed)

    key = str(name_or_path)
    if key.lower() in NAMES and not os.path.isfile(key):
        name = key.lower()
        if name == "digits":
            return _materialize(_read_digits(), val_fraction, seed, scale, _in_memory)
        files, folder = _locate_idx(name, data_dir)
        identity = [_file_identity(files[role]) for role in _IDX_ROLES]
        read = partial(_read_idx_set, name, files, folder)
        return _finish(read, val_fraction, seed, scale, identity, name)

    path = _resolve_user_path(name_or_path, data_dir)
    suffix = path.suffix.lower()
    identity = [_file_identity(path), label_column if suffix == ".csv" else None]
    read = partial(_read_npz, path) if suffix == ".npz" else partial(_read_csv, path, label_column)
    return _finish(read, val_fraction, seed, scale, identity, path.stem)


def cache_root() -> Path:
    """The cache folder: ``$MLPSEARCH_CACHE`` if set, else ``~/.cache/mlpsearch``."""
    root = os.environ.get("MLPSEARCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mlpsearch"


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into a kept part and a held-out part of about ``fraction`` of each class.

    The held-out size is ``round(fraction * n)``, shared among classes by largest remainder
    (ties to the lower class), and every class keeps at least one sample in the kept part.

    Parameters
    ----------
    y : int labels 0..k-1, shape (n,).
    fraction : share to hold out, 0 < fraction < 1.
    rng : draws which samples of each class are held out.

    Returns
    -------
    keep, hold : sorted int64 index arrays, disjoint, together 0..n-1.
    """
    y = np.asarray(y)
    counts = np.bincount(y)
    exact = fraction * counts
    cap = np.maximum(counts - 1, 0)
    take = np.minimum(np.floor(exact).astype(np.int64), cap)
    remaining = int(round(fraction * len(y))) - int(take.sum())
    for c in np.lexsort((np.arange(len(counts)), -(exact - take))):
        if remaining <= 0:
            break
        if take[c] < cap[c]:
            take[c] += 1
            remaining -= 1
    hold_mask = np.zeros(len(y), dtype=bool)
    for c in range(len(counts)):
        members = np.flatnonzero(y == c)
        hold_mask[rng.permutation(members)[: take[c]]] = True
    return np.flatnonzero(~hold_mask), np.flatnonzero(hold_mask)


# ---------------------------------------------------------------------------------------------
# Splitting, scaling and the prepared cache


@dataclass(frozen=True, eq=False)
class _Raw:
    """Unsplit data as read: ``X_rest``/``y_rest`` is everything but the test part."""

    name: str
    X_rest: np.ndarray  # (n, n_features), any real dtype
    y_rest: np.ndarray  # (n,), int64 0..k-1
    X_test: np.ndarray  # (n_test, n_features)
    y_test: np.ndarray  # (n_test,)
    classes: tuple[str, ...]
    source: str
    unit_divisor: float | None  # known maximum of the format; None -> per-feature min-max
    labels: tuple[int | str, ...]  # the data's own label of each class 0..k-1
    feature_names: tuple[str, ...] | None = None


def _finish(read, val_fraction, seed, scale, identity, slug) -> Dataset:
    """Split and scale the data ``read()`` returns; large data goes through the prepared cache.

    ``identity`` (JSON-able) names the source files; with the split and scaling arguments it
    keys the prepared folder ``<cache>/prepared/<slug>-<hash>/``.
    """
    digest = hashlib.sha256(
        json.dumps([_FORMAT_VERSION, identity, val_fraction, seed, scale, TEST_FRACTION,
                    TEST_SEED]).encode()
    ).hexdigest()[:16]  # fmt: skip
    prepared = cache_root() / "prepared" / f"{slug}-{digest}"
    if (prepared / "meta.json").is_file():
        try:
            return _load_prepared(prepared)
        except DataError:  # damaged (a meta.json holding {}, a cut array): built again below
            pass
    raw = read()
    if (len(raw.y_rest) + len(raw.y_test)) * raw.X_rest.shape[1] * 4 <= LARGE_BYTES:
        return _materialize(raw, val_fraction, seed, scale, _in_memory)
    try:
        with _build_lock(prepared) as locked:
            if not _is_valid_prepared(prepared):  # another worker may have built it
                _write_prepared(raw, prepared, val_fraction, seed, scale, locked)
    except OSError:  # read-only or full cache: still usable, just not shared
        return _materialize(raw, val_fraction, seed, scale, _in_memory)
    return _load_prepared(prepared)


def _build_lock(prepared: Path) -> FileLock:
    """The lock on ``.<prepared>.lock`` that one worker holds while it builds ``prepared``.

    Its ``with`` block yields whether the lock is held: where the file system cannot lock,
    workers build in parallel and the atomic rename picks one result. A builder stopped or
    hung for :data:`BUILD_LOCK_SECONDS` makes the others give up (LockTimeout, an OSError),
    and each then uses the data in memory, unshared.
    """
    prepared.parent.mkdir(parents=True, exist_ok=True)
    lock = prepared.parent / f".{prepared.name}.lock"
    return file_lock(lock, BUILD_LOCK_SECONDS, what=f"data cache {prepared}")


def _is_valid_prepared(folder: Path) -> bool:
    try:
        _load_prepared(folder)
    except DataError:
        return False
    return True


def _write_prepared(raw: _Raw, prepared: Path, val_fraction, seed, scale, locked) -> None:
    """Build the prepared folder under a temporary name, then rename it into place."""
    if locked:  # nobody else is building: temporary folders left here are from crashes
        for stale in prepared.parent.glob(f".{prepared.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prepared.name}.", dir=prepared.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the folder from other users' workers

        def alloc(part, shape, dtype):
            return np.lib.format.open_memmap(tmp / f"{part}.npy", "w+", dtype, shape)

        ds = _materialize(raw, val_fraction, seed, scale, alloc)
        for part in _PARTS:
            getattr(ds, part).flush()
        meta = {"version": _FORMAT_VERSION, "name": ds.name, "classes": list(ds.classes),
                "source": ds.source, "scaling": ds.scaling.to_json(), "labels": list(ds.labels),
                "feature_names": ds.feature_names}  # fmt: skip
        write_atomic(tmp / "meta.json", json.dumps(meta, indent=1))
        del ds
        if locked and prepared.exists() and not _is_valid_prepared(prepared):
            shutil.rmtree(prepared)  # a damaged copy of ours: replaced
        try:
            os.rename(tmp, prepared)
        except OSError:
            if not _is_valid_prepared(prepared):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_prepared(folder: Path) -> Dataset:
    """Memory-map a prepared dataset folder (read-only)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {
            p: np.load(folder / f"{p}.npy", mmap_mode="r", allow_pickle=False) for p in _PARTS
        }
        problem = _meta_problem(meta, arrays)
        if not problem:
            scaling = Scaling.from_json(meta["scaling"])
            labels, names = tuple(meta["labels"]), meta["feature_names"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = str(e)
    if problem:
        raise DataError(f"{folder}: damaged prepared dataset ({problem}); delete the folder")
    return Dataset(
        name=meta["name"],
        **arrays,
        classes=tuple(meta["classes"]),
        n_features=int(arrays["X_train"].shape[1]),
        n_classes=len(meta["classes"]),
        source=f"{meta['source']}; memory-mapped from {folder}",
        scaling=scaling,
        labels=labels,
        feature_names=None if names is None else tuple(names),
    )


def _meta_problem(meta: object, arrays: dict[str, np.ndarray]) -> str:
    """What is wrong with a prepared folder's meta.json and arrays ('' if nothing)."""
    if not isinstance(meta, dict):
        return "meta.json is not an object"
    if not isinstance(meta.get("name"), str) or not isinstance(meta.get("source"), str):
        return "meta.json lacks name or source"
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(
        isinstance(c, str) for c in classes
    ):
        return "meta.json lacks the class names"
    width = arrays["X_train"].shape[1] if arrays["X_train"].ndim == 2 else -1
    for part in ("train", "val", "test"):
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim != 2 or X.shape[1] != width or y.shape != (len(X),) or X.dtype != np.float32:
            return f"X_{part}/y_{part} have shapes {X.shape}/{y.shape}"
        if y.dtype != np.int64:
            return f"y_{part} has dtype {y.dtype}"
    return ""


def _materialize(raw: _Raw, val_fraction, seed, scale, alloc) -> Dataset:
    """Split ``raw`` into parts, scale them and write them into arrays from ``alloc``.

    ``alloc(part, shape, dtype)`` returns the output array of one part (part e.g. "X_val"):
    ``_in_memory`` for in-memory data, or a function opening a new ``.npy`` memory map.
    """
    keep, val = stratified_split(raw.y_rest, val_fraction, np.random.default_rng(seed))
    if len(keep) == 0 or len(val) == 0 or len(raw.y_test) == 0:
        raise DataError(
            f"{raw.name}: too few samples ({len(raw.y_rest) + len(raw.y_test)}) for a "
            f"train / validation / test split at val_fraction={val_fraction}"
        )
    scaling = _fit_scaler(raw, keep, scale)
    offset, divisor = scaling.offset, scaling.divisor
    parts = {}
    for part, X, y, rows in (
        ("train", raw.X_rest, raw.y_rest, keep),
        ("val", raw.X_rest, raw.y_rest, val),
        ("test", raw.X_test, raw.y_test, np.arange(len(raw.y_test))),
    ):
        Xo = alloc(f"X_{part}", (len(rows), X.shape[1]), np.float32)
        for start in range(0, len(rows), _CHUNK_ROWS):
            block = X[rows[start : start + _CHUNK_ROWS]].astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                out = Xo[start : start + len(block)]
                out[...] = (block - offset) / divisor
            if not np.isfinite(out).all():
                r, c = np.argwhere(~np.isfinite(out))[0]
                raise DataError(
                    f"{raw.name}: feature {c + 1} of {part} row {start + r + 1} is "
                    f"{X[rows[start + r], c]!r}, too large for float32 after {scale!r} scaling"
                )
        yo = alloc(f"y_{part}", (len(rows),), np.int64)
        yo[:] = y[rows]
        parts[f"X_{part}"], parts[f"y_{part}"] = Xo, yo
    if alloc is _in_memory:
        for arr in parts.values():
            arr.flags.writeable = False
    return Dataset(
        name=raw.name,
        **parts,
        classes=raw.classes,
        n_features=int(raw.X_rest.shape[1]),
        n_classes=len(raw.classes),
        source=raw.source,
        scaling=scaling,
        labels=raw.labels,
        feature_names=raw.feature_names,
    )


def _in_memory(part: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    return np.empty(shape, dtype)


def _fit_scaler(raw: _Raw, rows: np.ndarray, scale: str) -> Scaling:
    """Offset and divisor, shape (n_features,), fitted on ``raw.X_rest[rows]``."""
    d = raw.X_rest.shape[1]
    if scale == "none":
        return Scaling.identity(d)
    if scale == "unit" and raw.unit_divisor is not None:
        return Scaling(scale, np.zeros(d), np.full(d, raw.unit_divisor))
    # One pass in chunks (Chan et al.'s pairwise update for the variance), float64.
    n, mean, m2 = 0, np.zeros(d), np.zeros(d)
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    for start in range(0, len(rows), _CHUNK_ROWS):
        block = raw.X_rest[rows[start : start + _CHUNK_ROWS]].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # huge features: refused below
            nb, mb = len(block), block.mean(axis=0)
            delta, total = mb - mean, n + nb
            m2 += ((block - mb) ** 2).sum(axis=0) + delta**2 * (n * nb / total)
            mean += delta * (nb / total)
        n = total
        np.minimum(lo, block.min(axis=0), out=lo)
        np.maximum(hi, block.max(axis=0), out=hi)
    huge = np.maximum(np.abs(lo), np.abs(hi)) > _HUGE  # differences and squares would overflow
    if huge.any():
        c = int(np.argmax(huge))
        raise DataError(
            f"{raw.name}: feature {c + 1} reaches {max(abs(lo[c]), abs(hi[c])):.3g} in the "
            f"training part; {scale!r} scaling needs values below 2**500 in magnitude "
            "(divide the feature by a constant first)"
        )
    if scale == "unit":
        spread = hi - lo
        return Scaling(scale, lo, np.where(spread > 0, spread, 1.0))
    std = np.sqrt(m2 / n)
    # Constant features (up to rounding) are only centred, not blown up.
    return Scaling(scale, mean, np.where(std > 1e-7 * np.maximum(1.0, np.abs(mean)), std, 1.0))


def _file_identity(path: Path | str) -> list:
    st = os.stat(path)
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns]


# ---------------------------------------------------------------------------------------------
# Sources


def _read_digits() -> _Raw:
    digits = resources.files(__package__).joinpath("digits.npz")
    with digits.open("rb") as f, np.load(f, allow_pickle=False) as z:
        X, y = z["X"], z["y"].astype(np.int64)
    rest, test = stratified_split(y, TEST_FRACTION, np.random.default_rng(TEST_SEED))
    return _Raw(
        name="digits",
        X_rest=X[rest],
        y_rest=y[rest],
        X_test=X[test],
        y_test=y[test],
        classes=CLASS_NAMES["digits"],
        labels=tuple(range(10)),
        source="digits: 1,797 8x8 images, UCI optical recognition of handwritten digits via "
        "scikit-learn (embedded); test part: fixed-seed stratified 20%",
        unit_divisor=16.0,
    )


def _idx_candidates(name: str, data_dir) -> list[tuple[Path, bool]]:
    """Folders to search, in order, each with a flag: True for the (fillable) cache folder."""
    folders = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        if base.exists() and not base.is_dir():
            raise DataError(f"data_dir {base}: not a folder")
        folders += [(base / name, False), (base, False)]
    if os.environ.get("MLPSEARCH_DATA"):
        folders.append((Path(os.environ["MLPSEARCH_DATA"]).expanduser() / name, False))
    folders.append((cache_root() / name, True))
    folders += [(Path(p), False) for p in SYSTEM_DIRS.get(name, [])]
    return folders


def _find_idx_files(folder: Path) -> dict[str, Path]:
    """The MNIST-family files present in ``folder``, by role (gzipped or not, - or . naming)."""
    found = {}
    for role, stem in _IDX_ROLES.items():
        dotted = stem.replace("-idx", ".idx")
        for candidate in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
            if (folder / candidate).is_file():
                found[role] = folder / candidate
                break
    return found


def _locate_idx(name: str, data_dir) -> tuple[dict[str, Path], Path]:
    """Find (or download) the four IDX files of ``name``; return them and their folder."""
    looked, cache_dir = [], cache_root() / name
    for folder, is_cache in _idx_candidates(name, data_dir):
        looked.append(str(folder))
        found = _find_idx_files(folder)
        if len(found) == len(_IDX_ROLES):
            return found, folder
        if found and not is_cache:
            missing = [r for r in _IDX_ROLES if r not in found]
            which = "training" if any(r.startswith("train") for r in missing) else "test"
            raise DataError(
                f"{name}: {which} files missing in {folder}: "
                + ", ".join(f"{_IDX_ROLES[r]}[.gz]" for r in missing)
                + f" (found {', '.join(p.name for p in found.values())})"
            )
    how = (
        f"put {', '.join(download.FILES)} in {cache_dir}, in $MLPSEARCH_DATA/{name}/, "
        "or in a folder passed as data_dir"
    )
    if os.environ.get("MLPSEARCH_OFFLINE"):
        raise DataError(
            f"{name}: IDX files not found (looked in {', '.join(looked)}; "
            f"MLPSEARCH_OFFLINE is set, so no download); {how}"
        )
    present = _find_idx_files(cache_dir)
    try:
        for role, filename in zip(_IDX_ROLES, download.FILES, strict=True):
            if role not in present:
                download.download_file(name, filename, cache_dir)
    except (DataError, OSError) as e:
        raise DataError(f"{name}: IDX files not found (looked in {', '.join(looked)}) and {e}; "
                        f"{how}") from None  # fmt: skip
    return _find_idx_files(cache_dir), cache_dir


def _read_idx_set(name: str, files: dict[str, Path], folder: Path) -> _Raw:
    X_rest, y_rest = read_image_label_pair(files["train-images"], files["train-labels"])
    X_test, y_test = read_image_label_pair(files["test-images"], files["test-labels"])
    if X_rest.shape[1] != X_test.shape[1]:
        raise DataError(
            f"{files['test-images']}: images have {X_test.shape[1]} pixels, "
            f"training images {X_rest.shape[1]}"
        )
    return _Raw(
        name=name,
        X_rest=X_rest,
        y_rest=y_rest.astype(np.int64),
        X_test=X_test,
        y_test=y_test.astype(np.int64),
        classes=CLASS_NAMES[name],
        labels=tuple(range(len(CLASS_NAMES[name]))),
        source=f"{name}: IDX files in {folder.resolve()}; test part: the official t10k files",
        unit_divisor=255.0,
    )


def _resolve_user_path(name_or_path, data_dir) -> Path:
    path = Path(name_or_path).expanduser()
    if not path.exists() and data_dir is not None and not path.is_absolute():
        path = Path(data_dir).expanduser() / path
    if path.suffix.lower() not in (".npz", ".csv"):
        raise DataError(
            f"unknown dataset {str(name_or_path)!r}: expected one of {', '.join(NAMES)} "
            "or a path to a .npz or .csv file"
        )
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    return path


def _read_npz(path: Path) -> _Raw:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise DataError(f"{path}: not a .npz archive (save with numpy.savez)")
    _check_npz_sizes(path)
    with npz_errors(path), np.load(path, allow_pickle=False) as z:
        names = list(z.files)
        missing = [k for k in ("X", "y") if k not in names]
        if missing:
            raise DataError(
                f"{path}: missing array {' and '.join(map(repr, missing))} "
                f"(found: {', '.join(names) or 'nothing'})"
            )
        arrays = {k: z[k] for k in ("X", "y", "X_test", "y_test") if k in names}
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: X_test and y_test must be given together")
    X, y = _check_arrays(path, arrays["X"], arrays["y"], "X", "y", "row")
    test = None
    if "X_test" in arrays:
        test = _check_arrays(path, arrays["X_test"], arrays["y_test"], "X_test", "y_test", "row")
        if test[0].shape[1] != X.shape[1]:
            raise DataError(f"{path}: X_test has {test[0].shape[1]} features, X has {X.shape[1]}")
    return _user_raw(path, X, y, test, f"{path} (.npz)")


def _check_npz_sizes(path: Path) -> None:
    """Read the header of each array in the archive and refuse, before loading anything, an
    array whose declared size does not match the bytes stored for it (a forged or cut header)
    or whose arrays together would not fit in memory."""
    total = 0
    with npz_errors(path), zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in ("X", "y", "X_test", "y_test"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f, max_header_size=100_000)
                header_len = f.tell()
            if any(d < 0 for d in shape):
                raise DataError(f"{path}: array {name} declares a negative shape {shape}")
            if dtype.hasobject:
                raise DataError(f"{path}: holds Python objects; save numeric arrays")
            declared = math.prod(shape) * dtype.itemsize
            stored = info.file_size - header_len
            if declared != stored:
                raise DataError(
                    f"{path}: array {name} declares shape {shape} of {dtype} "
                    f"({describe_bytes(declared)}) but stores {describe_bytes(stored)}; "
                    "damaged or forged"
                )
            # the array, its float64 working copy per chunk is small; its float32 copy
            total += declared + math.prod(shape) * 4
    if total > available_bytes():
        raise DataError(
            f"{path}: its arrays need {describe_bytes(total)} of memory (with their float32 "
            f"copies), more than the {describe_bytes(available_bytes())} available"
        )


def _read_csv(path: Path, label_column: str) -> _Raw:
    need = path.stat().st_size * 8  # at most one float64 per two bytes, and its copies
    if need > available_bytes():
        raise DataError(
            f"{path}: {describe_bytes(path.stat().st_size)} of text may need up to "
            f"{describe_bytes(need)} of memory, more than the "
            f"{describe_bytes(available_bytes())} available"
        )
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {_not_utf8(e)}") from None
    columns = [c.strip().strip('"').strip("'").strip() for c in header.rstrip("\r\n").split(",")]
    if not header.strip():
        raise DataError(f"{path}: empty file (expected a header row)")
    if columns.count(label_column) != 1:
        problem = "no column" if label_column not in columns else "several columns"
        shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
        raise DataError(
            f"{path}: {problem} named {label_column!r} in the header ({shown}); "
            "pass label_column= to name the label column"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:  # features are matched by name (predict), so a name must say which column
        raise DataError(f"{path}: the header names several columns {repeated[0]!r}")
    li = columns.index(label_column)
    read = partial(np.loadtxt, path, delimiter=",", skiprows=1, ndmin=2, quotechar='"',
                   encoding="utf-8-sig")  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            # the label column is read as text (numbers or words), the features as numbers
            data = read(converters={li: lambda _: 0.0})
            labels = read(usecols=[li], dtype=str)[:, 0] if data.shape[0] else None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {_not_utf8(e)}") from None
    except ValueError as e:
        reason = " ".join(str(e).split(";")[0].split())
        raise DataError(f"{path}: {reason} (rows counted after the header)") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty file (a header but no data rows)")
    if data.shape[1] != len(columns):
        raise DataError(f"{path}: the header has {len(columns)} columns, rows {data.shape[1]}")
    y = _csv_labels(path, labels)
    X, y = _check_arrays(path, np.delete(data, li, axis=1), y, "features", "labels",
                         "data row")  # fmt: skip
    names = tuple(c for i, c in enumerate(columns) if i != li)
    return _user_raw(path, X, y, None, f"{path} (.csv, label column {label_column!r})", names)


def _csv_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """A CSV label column as numbers (float64, checked as integers later) or as words (str)."""
    labels = np.char.strip(labels)
    empty = labels == ""
    if empty.any():
        raise DataError(f"{path}: labels: data row {int(np.argmax(empty)) + 1} has no label")
    try:
        return labels.astype(np.float64)
    except ValueError:
        return labels  # words: kept as text, mapped to 0..k-1 in sorted order


def _not_utf8(err: UnicodeDecodeError) -> str:
    return (
        f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start} of a "
        "block); save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def _check_arrays(path, X, y, xname, yname, row) -> tuple[np.ndarray, np.ndarray]:
    """Validate one features/labels pair; return X as (n, n_features) and y as int64 (n,)."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim < 2:
        raise DataError(f"{path}: {xname} must have shape (samples, features), got {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: {yname} must have shape (samples,), got {y.shape}")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: {xname} must be numeric, found dtype {X.dtype}")
    X = X.reshape(len(X), int(np.prod(X.shape[1:])))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: empty data: {xname} has shape {X.shape}")
    if len(y) != len(X):
        raise DataError(
            f"{path}: mismatched lengths: {xname} has {len(X)} rows, {yname} {len(y)} labels"
        )
    problem = nonfinite(X, row)
    if problem:
        raise DataError(f"{path}: {xname} has {problem}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            r = int(np.argmax(bad))
            raise DataError(
                f"{path}: {yname} must be integers; {int(bad.sum())} are not "
                f"(first: {row} {r + 1}, value {y[r]})"
            )
    elif y.dtype.kind == "U":  # words (a CSV's text labels, a .npz's unicode array)
        return X, y
    elif y.dtype.kind not in "biu":
        raise DataError(f"{path}: {yname} must be integers or text, found dtype {y.dtype}")
    return X, y.astype(np.int64)


def _user_raw(path: Path, X, y, test, source: str, feature_names=None) -> _Raw:
    """Map labels to 0..k-1 and hold out the test part (unless given) for users' data."""
    if test is not None and (y.dtype.kind == "U") != (test[1].dtype.kind == "U"):
        raise DataError(f"{path}: y and y_test must both be numbers or both be text")
    all_y = y if test is None else np.concatenate([y, test[1]])
    values, codes = np.unique(all_y, return_inverse=True)
    if len(values) < 2:
        raise DataError(f"{path}: only one class (label {values[0]}); need at least two")
    classes = tuple(str(v) for v in values.tolist())
    if test is None:
        rest, hold = stratified_split(codes, TEST_FRACTION, np.random.default_rng(TEST_SEED))
        parts = (X[rest], codes[rest], X[hold], codes[hold])
        source += "; test part: fixed-seed stratified 20%"
    else:
        parts = (X, codes[: len(y)], test[0], codes[len(y) :])
        source += "; test part: X_test, y_test"
    return _Raw(
        path.stem,
        *parts,
        classes=classes,
        source=source,
        unit_divisor=None,
        labels=tuple(values.tolist()),
        feature_names=feature_names,
    )
