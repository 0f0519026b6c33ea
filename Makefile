# The two commands of the README. Everything else is a helper for them.
PYTHON ?= python3
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

## Set up and run the main job on the built-in MetaWorld default.
demo: setup
	bash scripts/demo.sh

## Set up and run the test suite (fast unit tests + small end-to-end tests marked slow).
test: setup
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check src tests benchmarks

bench: setup
	$(PYTHON) benchmarks/bench_foundation.py
