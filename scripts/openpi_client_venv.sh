#!/usr/bin/env bash
# Creates (once) a small virtual environment holding the PyPI package `openpi-client`, used by the interoperability
# test of the policy server. openpi-client 0.1.2 pins numpy<2, which the project's own environment must not be
# downgraded to, so it lives in its own venv. The venv is cached: a completed one carries a stamp file and is reused;
# one without the stamp (an interrupted run) is rebuilt. A lock keeps concurrent callers from building it twice.
#
# Usage: scripts/openpi_client_venv.sh [VENV_DIR]    (default: data/.venvs/openpi-client, gitignored)
# Prints the path of the venv's python on success; all other output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
OPENPI_CLIENT_VERSION="${OPENPI_CLIENT_VERSION:-0.1.2}"
venv="${1:-data/.venvs/openpi-client}"
stamp="$venv/.vlajepa-ready-$OPENPI_CLIENT_VERSION"

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$stamp" ]; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" >&2
    # openpi-client imports typing_extensions without declaring it.
    "$venv/bin/python" -m pip install -q "openpi-client==$OPENPI_CLIENT_VERSION" typing_extensions >&2
    "$venv/bin/python" -c 'import openpi_client.websocket_client_policy' >&2
    touch "$stamp"
fi
echo "$(cd "$venv" && pwd)/bin/python"
