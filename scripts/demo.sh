#!/usr/bin/env bash
# The README's main job, end to end on MetaWorld MT10 in about 15 minutes on a 2-core CPU:
#   1. collect a small scripted-expert dataset (LeRobot v3) and an action-free, domain-shifted video set;
#   2. evaluate the scripted expert (the harness's upper bound) on MT10;
#   3. pretrain the frozen target encoder on the video (masked latent prediction, `vlajepa pretrain-encoder`);
#   4. co-train VLA-JEPA briefly on robot + video data against that target (the default preset);
#   5. evaluate the checkpoint in distribution and print the results table.
# Knobs (environment): VLAJEPA_DEMO_DIR, VLAJEPA_DEMO_EPISODES (demos and videos per task), VLAJEPA_DEMO_STEPS,
# VLAJEPA_DEMO_ENCODER_STEPS, VLAJEPA_DEMO_BATCH, VLAJEPA_DEMO_EVAL_EPISODES, VLAJEPA_DEMO_THREADS. Collected data
# and the pretrained encoder are reused on a second run.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"

OUT="${VLAJEPA_DEMO_DIR:-outputs/demo}"
EPISODES="${VLAJEPA_DEMO_EPISODES:-5}"
STEPS="${VLAJEPA_DEMO_STEPS:-1200}"
ENCODER_STEPS="${VLAJEPA_DEMO_ENCODER_STEPS:-300}"
BATCH="${VLAJEPA_DEMO_BATCH:-16}"
EVAL_EPISODES="${VLAJEPA_DEMO_EVAL_EPISODES:-5}"
THREADS="${VLAJEPA_DEMO_THREADS:-2}"
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[demo] $1: $(( $(date +%s) - start )) s elapsed"; }

[ -d "$OUT/robot" ] || vlajepa collect robot --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/robot" --no-progress
[ -d "$OUT/video" ] || vlajepa collect video --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/video" --no-progress
vlajepa info --dataset "$OUT/robot"
stamp "data collected"
vlajepa eval --policy expert --tasks mt10 --episodes "$EVAL_EPISODES" --videos 0 --out "$OUT/expert_mt10" --no-progress
stamp "expert evaluated"
ENCODER="$OUT/encoder/encoder.safetensors"
[ -f "$ENCODER" ] || vlajepa pretrain-encoder --video "$OUT/video" --out "$OUT/encoder" --steps "$ENCODER_STEPS" \
  --threads "$THREADS"
stamp "target encoder pretrained"
vlajepa train --robot "$OUT/robot" --video "$OUT/video" --target-checkpoint "$ENCODER" --out "$OUT/cotrain" --overwrite \
  --steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS" --checkpoint-every "$STEPS" --log-every 50 --no-progress
stamp "trained"
vlajepa eval --policy "checkpoint:$OUT/cotrain/checkpoints/last" --name vla-jepa-cotrain --tasks mt10 \
  --episodes "$EVAL_EPISODES" --videos 1 --out "$OUT/eval_mt10" --no-progress
stamp "evaluated (tables above; JSON, markdown and plots in $OUT/*.json|md|png)"
