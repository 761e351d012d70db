"""mlpsearch: hyperparameter search for a multi-layer perceptron written from scratch in numpy.

``mlpsearch.engine`` is the numpy MLP (numpy and the standard library only); the rest of the
package (experiment files, Optuna studies in worker processes, reports, the command line) is the
search layer, which imports the engine and never the reverse.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlpsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The Python API (see mlpsearch.api), imported on first use: ``import mlpsearch`` stays light
# (no optuna, pandas or matplotlib until a function needs them).
_LAZY = {
    "run": "mlpsearch.api",
    "load": "mlpsearch.api",
    "train": "mlpsearch.api",
    "Study": "mlpsearch.api",
    "Experiment": "mlpsearch.config",
    "Model": "mlpsearch.engine.model",
}
__all__ = ["Experiment", "Model", "Study", "__version__", "load", "run", "train"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
