"""Produce ``engine/data/digits.npz``, the embedded default dataset, from scikit-learn.

Run once, from the repository root, after ``pip install scikit-learn``::

    python scripts/make_digits.py

scikit-learn is needed only here; the engine reads the ``.npz`` with numpy alone.

The data are the 1,797 8x8 images of scikit-learn's ``load_digits``: the test part of the
UCI "Optical Recognition of Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998;
UCI Machine Learning Repository, https://doi.org/10.24432/C50P49, licensed CC BY 4.0), where
each pixel counts the set pixels of a 4x4 block of a 32x32 bitmap, so values are integers 0..16.
They are stored as uint8 in a compressed ``.npz`` with two arrays:

- ``X``: uint8, shape (1797, 64), row-major 8x8 images, values 0..16.
- ``y``: uint8, shape (1797,), digit labels 0..9.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "engine" / "data" / "digits.npz"


def main() -> None:
    digits = load_digits()
    X = np.asarray(digits.data)
    y = np.asarray(digits.target)
    if X.shape != (1797, 64) or y.shape != (1797,):
        raise SystemExit(f"unexpected shapes from scikit-learn: X {X.shape}, y {y.shape}")
    if not np.array_equal(X, np.round(X)) or X.min() < 0 or X.max() > 16:
        raise SystemExit("unexpected pixel values: expected integers 0..16")
    if set(np.unique(y).tolist()) != set(range(10)):
        raise SystemExit("unexpected labels: expected 0..9")
    np.savez_compressed(OUT, X=X.astype(np.uint8), y=y.astype(np.uint8))
    counts = np.bincount(y, minlength=10).tolist()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes): X {X.shape}, class counts {counts}")


if __name__ == "__main__":
    main()
