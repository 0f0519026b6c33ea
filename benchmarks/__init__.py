"""Benchmark and probe scripts, run as ``python benchmarks/<name>.py``; a package so that tests can import them
(``from benchmarks.run_mt10 import ...``, the repository root is on pytest's pythonpath)."""
