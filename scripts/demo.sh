#!/usr/bin/env bash
# The README's main job, end to end on MetaWorld MT10 in about 15 minutes on a 2-core CPU:
#   1. collect a small scripted-expert dataset (LeRobot v3) and an action-free, domain-shifted video set;
#   2. evaluate the scripted expert (the harness's upper bound) on MT10;
#   3. pretrain the frozen target encoder on the video (masked latent prediction, `vlajepa pretrain-encoder`);
#   4. co-train VLA-JEPA briefly on robot + video data against that target (the default preset);
#   5. evaluate the checkpoint in distribution and print the results table;
#   6. world-model action selection: record the policy's own episodes, train a planner (an action-conditioned latent
#      world model and a language-goal score) around the checkpoint, evaluate it on the same episodes and print the
#      planned result beside the policy-only one.
# Every output (data, encoder, checkpoints, metrics, tensorboard logs, results, videos) goes under one folder.
# Knobs (environment): VLAJEPA_DEMO_DIR (that folder, default outputs/demo in the repository), VLAJEPA_DEMO_EPISODES
# (demos and videos per task), VLAJEPA_DEMO_STEPS, VLAJEPA_DEMO_ENCODER_STEPS, VLAJEPA_DEMO_BATCH,
# VLAJEPA_DEMO_EVAL_EPISODES, VLAJEPA_DEMO_THREADS, VLAJEPA_DEMO_ROLLOUTS (rollouts per task for the planner),
# VLAJEPA_DEMO_PLANNER_STEPS; VENV (default .venv, whose vlajepa is used when it exists).
# Collected data and the pretrained encoder are reused on a second run.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"
VENV="${VENV-.venv}"
if [ -n "$VENV" ] && [ -x "$VENV/bin/vlajepa" ]; then
    PATH="$(cd "$VENV/bin" && pwd):$PATH"
fi
command -v vlajepa >/dev/null || { echo "[demo] vlajepa is not installed: run \`make setup\` first" >&2; exit 1; }

OUT="${VLAJEPA_DEMO_DIR:-outputs/demo}"
case "$OUT" in /*) ;; *) [ -n "${VLAJEPA_DEMO_DIR:-}" ] && OUT="$caller/$OUT" ;; esac
EPISODES="${VLAJEPA_DEMO_EPISODES:-5}"
STEPS="${VLAJEPA_DEMO_STEPS:-1200}"
ENCODER_STEPS="${VLAJEPA_DEMO_ENCODER_STEPS:-300}"
BATCH="${VLAJEPA_DEMO_BATCH:-16}"
EVAL_EPISODES="${VLAJEPA_DEMO_EVAL_EPISODES:-5}"
THREADS="${VLAJEPA_DEMO_THREADS:-2}"
ROLLOUTS="${VLAJEPA_DEMO_ROLLOUTS:-5}"
PLANNER_STEPS="${VLAJEPA_DEMO_PLANNER_STEPS:-600}"
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[demo] $1: $(( $(date +%s) - start )) s elapsed"; }

[ -d "$OUT/robot" ] || vlajepa collect robot --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/robot"
[ -d "$OUT/video" ] || vlajepa collect video --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/video"
vlajepa info --dataset "$OUT/robot"
stamp "data collected"
vlajepa eval --policy expert --tasks mt10 --episodes "$EVAL_EPISODES" --videos 0 --out "$OUT/expert_mt10"
stamp "expert evaluated"
ENCODER="$OUT/encoder/encoder.safetensors"
[ -f "$ENCODER" ] || vlajepa pretrain-encoder --video "$OUT/video" --out "$OUT/encoder" --steps "$ENCODER_STEPS" \
  --threads "$THREADS"
stamp "target encoder pretrained"
vlajepa train --robot "$OUT/robot" --video "$OUT/video" --target-checkpoint "$ENCODER" --out "$OUT/cotrain" --overwrite \
  --steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS" --checkpoint-every "$STEPS" --log-every 50
stamp "trained"
vlajepa eval --policy "checkpoint:$OUT/cotrain/checkpoints/last" --name vla-jepa-cotrain --tasks mt10 \
  --episodes "$EVAL_EPISODES" --videos 1 --out "$OUT/eval_mt10"
stamp "evaluated"
[ -d "$OUT/rollouts" ] || vlajepa collect rollouts --policy "checkpoint:$OUT/cotrain/checkpoints/last" --tasks mt10 \
  --episodes-per-task "$ROLLOUTS" --out "$OUT/rollouts"
vlajepa train-planner --policy "$OUT/cotrain/checkpoints/last" --robot "$OUT/robot" --rollouts "$OUT/rollouts" \
  --out "$OUT/planner" --steps "$PLANNER_STEPS" --threads "$THREADS"
vlajepa eval --planner "$OUT/planner" --name vla-jepa-cotrain+plan --tasks mt10 --episodes "$EVAL_EPISODES" \
  --videos 0 --out "$OUT/eval_mt10_planned"
stamp "planner trained and evaluated"
python3 - "$OUT/eval_mt10.json" "$OUT/eval_mt10_planned.json" <<'PY'
import json, sys
print("[demo] in distribution, the same episodes (success % [95 % CI], episodes):")
for path in sys.argv[1:]:
    report = json.load(open(path))
    pooled = [r for r in report["summary"] if r["setting"] == "id"][0]
    print(f"  {pooled['method']:<24} {100 * pooled['success_rate']:5.1f} [{100 * pooled['ci_low']:.1f}, "
          f"{100 * pooled['ci_high']:.1f}]  ({pooled['successes']}/{pooled['episodes']})")
PY
cat <<DONE
[demo] done; everything is under $OUT:
  checkpoint        $OUT/cotrain/checkpoints/last  (vlajepa eval --policy checkpoint:PATH, vlajepa serve --checkpoint PATH)
  planner           $OUT/planner  (vlajepa eval --planner PATH, vlajepa serve --planner PATH); its rollouts: $OUT/rollouts
  results           $OUT/eval_mt10.json, .md, .png  (planned: $OUT/eval_mt10_planned.*; expert: $OUT/expert_mt10.*)
  rollout videos    $OUT/videos/eval_mt10/
  training metrics  $OUT/cotrain/metrics.jsonl, $OUT/cotrain/tensorboard/  (tensorboard --logdir $OUT/cotrain/tensorboard)
  encoder           $ENCODER
  data              $OUT/robot (LeRobot v3), $OUT/video (action-free video)
DONE
