#!/usr/bin/env bash
# Installs everything vlajepa needs on a fresh Debian machine into the project's virtual environment .venv:
# headless-rendering libraries (EGL/Mesa) and Python's venv module when they are missing, the CPU build of torch
# pinned to 2.13.0 (any wider range pulls a multi-GB CUDA build), and the package itself (editable) with its
# simulation, serving, development and paper-scale extras. Safe to run again: it skips what is there.
# Knobs (environment): VENV (default .venv; empty: install into the interpreter PYTHON, default python3, instead),
# VLAJEPA_EXTRAS (default sim,serve,dev,paper), VLAJEPA_REINSTALL=1 (reinstall the package).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV-.venv}"

need_apt=()
ldconfig -p | grep -q 'libEGL.so.1' || need_apt+=(libegl1 libegl-mesa0)
ldconfig -p | grep -q 'libGL.so.1' || need_apt+=(libgl1 libgl1-mesa-dri)
ldconfig -p | grep -q 'libOSMesa' || need_apt+=(libosmesa6)
if [ -n "$VENV" ] && [ ! -x "$VENV/bin/python" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "[setup] installing Debian packages: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -n "$VENV" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        echo "[setup] creating the virtual environment $VENV"
        python3 -m venv "$VENV"
    fi
    PYTHON="$VENV/bin/python"
    stamp="$VENV/.vlajepa-setup-stamp"
else
    PYTHON="${PYTHON:-python3}"
    stamp=".setup-stamp"
fi

if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU) into $PYTHON"
    "$PYTHON" -m pip install -q torch==2.13.0
fi

extras="${VLAJEPA_EXTRAS:-sim,serve,dev,paper}"
if ! "$PYTHON" -c 'import vlajepa' 2>/dev/null || [ "${VLAJEPA_REINSTALL:-0}" = 1 ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing vlajepa[$extras] into $PYTHON"
    "$PYTHON" -m pip install -q -e ".[$extras]"
    touch "$stamp"
fi
if [ -n "$VENV" ]; then
    echo "[setup] ready: activate with \`source $VENV/bin/activate\` (or run $VENV/bin/vlajepa); \`make demo\` and \`make test\` use it"
else
    echo "[setup] ready ($PYTHON)"
fi
