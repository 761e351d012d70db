"""Read and validate IDX files, the format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the values in row-major order. Files may be gzipped; that is detected from the
content (``1f 8b``), not from the name. Every problem raises :class:`DataError` with one line that
names the file and says what is wrong.

This module also defines :class:`DataError`, the single exception type of the data layer
(``engine.data`` re-exports it).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from ..memory import available_bytes, describe_bytes

__all__ = ["DataError", "read_idx", "read_image_label_pair"]


class DataError(ValueError):
    """A dataset is missing, unreadable or invalid; the message is one line naming the file."""


# IDX type byte -> numpy dtype (big-endian, as the format stores it).
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_checked(path: str | os.PathLike) -> bytes:
    """The file's content, gunzipped if it is a gzip stream (at most one byte past the data).

    The header is read first and the size it declares checked against the memory this process
    may use before the data is read: a header declaring terabytes, or a small gzip stream that
    expands without end, is refused with one line instead of exhausting memory.
    """
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw) if gzipped else raw
            head = _read_exactly(f, 4)
            if len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_TYPES and head[3]:
                head += _read_exactly(f, 4 * head[3])
                if len(head) == 4 + 4 * head[3]:
                    declared = _check_declared(path, head)
                    return head + _read_exactly(f, declared + 1)  # one more: trailing bytes?
            return head + f.read(2**20)  # not an IDX header: enough to say so
    except OSError as e:
        if isinstance(e, gzip.BadGzipFile) or not getattr(e, "strerror", None):
            raise DataError(f"{path}: corrupt gzip data ({e})") from None
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip stream (file cut short?)") from None
    except zlib.error as e:
        raise DataError(f"{path}: corrupt gzip data ({e})") from None


def _read_exactly(f, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, 2**26))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _check_declared(path: str | os.PathLike, head: bytes) -> int:
    """The data bytes ``head`` declares; refused if they would not fit in memory."""
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3])]
    declared = math.prod(dims) * _IDX_TYPES[head[2]].itemsize
    # the bytes, and the float32 copy the dataset makes of them
    need = declared + math.prod(dims) * 4
    if need > available_bytes():
        raise DataError(
            f"{path}: header declares {'x'.join(map(str, dims))} values "
            f"({describe_bytes(declared)}); with its float32 copy that needs "
            f"{describe_bytes(need)}, more than the {describe_bytes(available_bytes())} "
            "of memory available"
        )
    return declared


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzipped) and check its header against its length.

    Parameters
    ----------
    path : path of the file.

    Returns
    -------
    ndarray of the shape the header declares, in native byte order (uint8 for MNIST-family
    files). Read-only.

    Raises
    ------
    DataError
        Unreadable file, bad gzip stream, bad magic number, unknown type code, a declared size
        larger than the memory available, or a data length that does not match the declared
        dimensions (truncated or with trailing bytes).
    """
    data = _read_checked(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file: {len(data)} bytes, too short for a header")
    zero, type_code, ndim = data[:2], data[2], data[3]
    if zero != b"\0\0" or type_code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path}: not an IDX file: bad magic number 0x{data[:4].hex()} "
            "(expected 00 00, a type code in 08 09 0b 0c 0d 0e, then the number of dimensions)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header: {ndim} dimensions need {header_len} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        what = "truncated" if found < expected else "trailing bytes after the data"
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{path}: {what}: header declares {shape} {dtype.name} = {expected:,} bytes, "
            f"file holds {found:,}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_image_label_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST-style images/labels pair and check they belong together.

    Parameters
    ----------
    images_path : IDX file of uint8 images, shape (n, rows, cols).
    labels_path : IDX file of uint8 labels, shape (n,).
    n_classes : labels must lie in 0..n_classes-1.

    Returns
    -------
    images : uint8 array, shape (n, rows * cols) (flattened row-major).
    labels : uint8 array, shape (n,).
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (n, rows, cols), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels of shape (n,), "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path}: {len(labels):,} labels for {len(images):,} images in {images_path}"
        )
    if len(labels) and int(labels.max()) >= n_classes:
        bad = int(np.argmax(labels >= n_classes))
        raise DataError(
            f"{labels_path}: label {int(labels[bad])} at index {bad} is out of range "
            f"0..{n_classes - 1}"
        )
    return images.reshape(len(images), -1), labels
