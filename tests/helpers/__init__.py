"""Helpers shared by the tests (``from helpers.models import tiny_config``); ``tests/`` is on pytest's pythonpath.

They are not part of the installed package. Synthetic datasets and untrained checkpoints, which the benchmarks
need too, live in :mod:`benchmarks.synthetic`.
"""
