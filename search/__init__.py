"""mlpsearch's search layer: experiment files, Optuna studies in worker processes, reports.

It imports :mod:`engine`; the engine never imports it.
"""
