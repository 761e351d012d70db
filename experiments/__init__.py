"""The shipped experiment files (``*.toml``), installed as ``mlpsearch.experiments``.

``mlpsearch run NAME`` finds them by name from any folder. The benchmarks in ``benchmarks/``
are scripts for this checkout and are not installed.
"""
