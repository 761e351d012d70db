"""The experiment's dataset, loaded the same way in the parent and in every worker, and the
check that a study only ever sees the data it started on.

``engine.load_dataset`` caches large datasets as ``.npy`` files and memory-maps them, so the
workers share the pages the parent prepared instead of each reading and holding a copy.

A study stores the fingerprint of its data (the parts' shapes, the classes and a SHA-256 of
the scaled arrays) when it is created; resuming it, joining it, or re-running one of its trials
on data that differs is refused with one line naming what changed.
"""

from __future__ import annotations

from typing import Any

from mlpsearch.config import Experiment
from mlpsearch.engine.data import Dataset, load_dataset
from mlpsearch.errors import ConfigError

FINGERPRINT_KEY = "data_fingerprint"


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


def check_same_data(
    study: Any, data: Dataset, action: str = "resume", record: bool = True
) -> None:
    """Refuse ``data`` if it differs from the data ``study`` started on.

    ``study`` is an ``optuna.Study``; a study that stores no fingerprint yet gets ``data``'s
    (unless ``record`` is False: readers never write). Raises ConfigError (exit 2) naming the
    change.
    """
    stored = study.user_attrs.get(FINGERPRINT_KEY)
    mine = data.fingerprint()
    if stored is None:
        if record:
            study.set_user_attr(FINGERPRINT_KEY, mine)
        return
    change = describe_change(stored, mine)
    if change:
        raise ConfigError(
            f"study {study.study_name!r} was started on other data than {data.name} holds now "
            f"({change}); cannot {action} it on this data: restore the data it ran on, or use "
            "--study NAME for a new study"
        )


def describe_change(stored: Any, mine: dict[str, Any]) -> str:
    """What differs between two fingerprints, in a few words ('' if nothing)."""
    if not isinstance(stored, dict):
        return "the stored fingerprint is damaged"
    changes = []
    old_shapes, new_shapes = stored.get("shapes") or {}, mine["shapes"]
    for part in ("X_train", "X_val", "X_test"):
        if old_shapes.get(part) != new_shapes[part]:
            changes.append(
                f"{part} {_shape(new_shapes[part])}, was {_shape(old_shapes.get(part))}"
            )
    if stored.get("classes") != mine["classes"]:
        changes.append(f"{len(mine['classes'])} classes, was {len(stored.get('classes') or [])}")
    if not changes and stored.get("sha256") != mine["sha256"]:
        changes.append(
            f"same shapes, other values: content hash {mine['sha256'][:12]}, was "
            f"{str(stored.get('sha256'))[:12]}"
        )
    return "; ".join(changes)


def _shape(shape: Any) -> str:
    return "x".join(str(n) for n in shape) if isinstance(shape, list) else "unknown"
