"""Download the MNIST-family IDX files from their public mirrors, checked against checksums.

Each file is streamed into a temporary file next to its destination (``write_atomic``), its
length checked against ``Content-Length`` and its MD5 against the published value, and only
then renamed into place: an interrupted, truncated or altered transfer never leaves a file that
looks valid.

The checksums are the MD5 digests of the published ``.gz`` files, as listed by torchvision
(``torchvision/datasets/mnist.py``).

Mirrors can be redirected, e.g. to a local copy or a test server: set ``MLPSEARCH_MIRROR`` to a
base URL and the file ``<file>`` of dataset ``<name>`` is fetched from
``$MLPSEARCH_MIRROR/<name>/<file>`` (instead of the public mirrors), or edit :data:`MIRRORS`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request

from ..files import write_atomic
from .idx import DataError

__all__ = ["CHECKSUMS", "MIRRORS", "TIMEOUT", "FILES", "download_file", "mirrors_for"]

#: The four IDX files of every MNIST-family dataset, as published (gzipped).
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Base URLs, tried in order; a file's URL is the base followed by its name.
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "kmnist": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
}

#: Published MD5 of each .gz file (torchvision's values).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}

#: Seconds a connect or a single read may block before the mirror counts as unreachable.
TIMEOUT = 15.0
_CHUNK = 1 << 20


def mirrors_for(name: str) -> list[str]:
    """Base URLs to try for ``name``: ``$MLPSEARCH_MIRROR/<name>/`` if set, else MIRRORS."""
    override = os.environ.get("MLPSEARCH_MIRROR")
    if override:
        return [f"{override.rstrip('/')}/{name}/"]
    return list(MIRRORS.get(name, []))


def _fetch(url: str, tmp, md5: str | None) -> None:
    """Stream ``url`` into the open file ``tmp``; raise OSError/DataError on any shortfall."""
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        declared = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(_CHUNK):
            tmp.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    # http.client returns a short body without complaint when the server closes early.
    if declared is not None and received != int(declared):
        raise DataError(f"transfer cut short: received {received:,} of {int(declared):,} bytes")
    if received == 0:
        raise DataError("empty response")
    if md5 is not None and digest.hexdigest() != md5:
        raise DataError(f"checksum mismatch: MD5 {digest.hexdigest()}, published {md5}")


def download_file(name: str, filename: str, dest_dir: str | os.PathLike) -> str:
    """Download one file of dataset ``name`` into ``dest_dir`` (created), trying each mirror.

    Parameters
    ----------
    name : dataset name, a key of :data:`MIRRORS`.
    filename : one of :data:`FILES`.
    dest_dir : destination folder; the file appears there only once it is complete and verified.

    Returns
    -------
    Path of the downloaded file.

    Raises
    ------
    DataError
        Every mirror failed; the message gives each mirror's reason.
    """
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, filename)
    md5 = CHECKSUMS.get(name, {}).get(filename)
    failures = []
    for base in mirrors_for(name):
        url = base + filename
        print(f"mlpsearch: downloading {url}", file=sys.stderr)
        try:
            write_atomic(dest, lambda tmp: _fetch(url, tmp, md5))  # noqa: B023 (called here)
            return dest
        except (OSError, DataError, ValueError, http.client.HTTPException) as e:
            # URLError, HTTPError and timeouts are OSErrors; ValueError: a bad Content-Length.
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            failures.append(f"{url}: {reason}")
    if not failures:
        raise DataError(f"no download mirror is known for {name!r}")
    raise DataError(f"download of {filename} failed: " + "; ".join(failures))
