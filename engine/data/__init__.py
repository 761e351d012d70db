"""Data loading: the embedded digits, the MNIST family (IDX files, downloads), users' files.

Kept apart from the numerical engine: ``import mlpsearch.engine`` does not load it (nor urllib,
http.client or fcntl), and the engine fingerprint that ``rerun`` checks leaves it out, since
how a dataset is found cannot change what a network computes on it.
"""

from .datasets import LARGE_BYTES, Dataset, cache_root, load_dataset, stratified_split
from .idx import DataError, read_idx, read_image_label_pair

__all__ = [
    "LARGE_BYTES",
    "DataError",
    "Dataset",
    "cache_root",
    "load_dataset",
    "read_idx",
    "read_image_label_pair",
    "stratified_split",
]
