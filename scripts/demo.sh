#!/usr/bin/env bash
# The README's main job on the built-in MetaWorld default: collect a small MT10 dataset of scripted-expert
# demonstrations (LeRobot v3) and an action-free video set, then evaluate the scripted expert and print the table.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"

OUT="${VLAJEPA_DEMO_DIR:-outputs/demo}"
EPISODES="${VLAJEPA_DEMO_EPISODES:-3}"
mkdir -p "$OUT"

vlajepa collect robot --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/robot" --overwrite
vlajepa collect video --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/video" --overwrite
vlajepa info --dataset "$OUT/robot"
vlajepa eval --policy expert --tasks mt10 --episodes "$EPISODES" --out "$OUT/expert_mt10"
