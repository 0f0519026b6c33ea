#!/usr/bin/env bash
# A few training steps of the paper preset on one GPU (tiny random networks unless model folders are given):
# prints the step time and peak GPU memory as one JSON line. Exits with a message (status 2) when no GPU is present.
#   scripts/gpu_smoke.sh                                   # tiny sizes, no weights needed
#   scripts/gpu_smoke.sh --vlm-dir ~/models/Qwen3-VL-2B-Instruct --vjepa2-dir ~/models/vjepa2-vitl-fpc64-256
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_smoke: no CUDA GPU on this machine (torch.cuda.is_available() is false); nothing was run" >&2
    exit 2
fi
exec "$PYTHON" benchmarks/gpu_smoke.py "$@"
