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
