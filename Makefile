# The two commands of the README. Everything else is a helper for them.
# Everything runs in the project's virtual environment .venv, which `make setup` creates. To use an interpreter
# that already has the project installed instead: `make test VENV= PYTHON=python3`.
VENV ?= .venv
ifeq ($(strip $(VENV)),)
PYTHON ?= python3
else
PYTHON := $(abspath $(VENV))/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup demo test lint bench

## Create .venv (if needed) and install torch (CPU) and the package with its extras into it.
setup:
	VENV="$(VENV)" PYTHON="$(PYTHON)" bash scripts/setup.sh

## Set up and run the main job on the built-in MetaWorld default.
demo: setup
	VENV="$(VENV)" bash scripts/demo.sh

## Set up and run lint, the import-layering contracts (pyproject's [tool.importlinter]) and the test suite (fast
## unit tests + small end-to-end tests marked slow).
test: setup lint
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check src tests benchmarks
	$(PYTHON) -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'

bench: setup
	$(PYTHON) benchmarks/bench_foundation.py
