"""The experiment's dataset, loaded the same way in the parent and in every worker.

``engine.load_dataset`` caches large datasets as ``.npy`` files and memory-maps them, so the
workers share the pages the parent prepared instead of each reading and holding a copy.
"""

from __future__ import annotations

from mlpsearch.engine.data import Dataset, load_dataset
from mlpsearch.config import Experiment


def load_data(exp: Experiment) -> Dataset:
    d = exp.data
    return load_dataset(
        d.dataset,
        data_dir=d.data_dir,
        val_fraction=d.val_fraction,
        seed=d.seed,
        scale=d.scale,
        label_column=d.label_column,
    )
