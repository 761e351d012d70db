"""Helpers for the test suite and the benchmarks (as ``optuna.testing`` is Optuna's): not part
of the API, and nothing outside tests and benchmarks imports it.

- :mod:`mlpsearch.testing.postgres`: a throwaway PostgreSQL server (Debian's binaries).
"""
