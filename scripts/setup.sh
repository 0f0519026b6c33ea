#!/usr/bin/env bash
# Installs everything vlajepa needs on a fresh Debian machine: headless-rendering libraries (EGL/Mesa) when they
# are missing, the CPU build of torch pinned to 2.13.0 (any wider range pulls a multi-GB CUDA build), and the
# package itself with its simulation, serving and development extras. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

need_apt=()
ldconfig -p | grep -q 'libEGL.so.1' || need_apt+=(libegl1 libegl-mesa0)
ldconfig -p | grep -q 'libGL.so.1' || need_apt+=(libgl1 libgl1-mesa-dri)
ldconfig -p | grep -q 'libOSMesa' || need_apt+=(libosmesa6)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "[setup] installing Debian packages for headless rendering: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" libgl1-mesa-dri >/dev/null
fi

if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU)"
    "$PYTHON" -m pip install -q torch==2.13.0
fi

extras="${VLAJEPA_EXTRAS:-sim,serve,dev}"
if ! "$PYTHON" -c 'import vlajepa' 2>/dev/null || [ "${VLAJEPA_REINSTALL:-0}" = 1 ] || [ pyproject.toml -nt .setup-stamp ]; then
    echo "[setup] installing vlajepa[$extras]"
    "$PYTHON" -m pip install -q -e ".[$extras]"
    touch .setup-stamp
fi
echo "[setup] ready"
