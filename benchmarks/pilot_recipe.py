"""Short MT10 BC pilots that pick the training recipe (learning rate, flow-matching draws per window).

Each variant trains BC for ``--steps`` optimizer steps on the MT10 robot set, then evaluates ``--episodes``
in-distribution episodes per task. BC isolates how fast the student and action head fit, which every method
shares. Short pilots only rank early fitting speed: at 2000 steps the winner's gain did not carry over
(``benchmarks/results/recipe/mt10_steps2000.md``). Variants pin both knobs explicitly, so the results do not depend
on the preset's current defaults. Runs two variants at once with one torch thread each (``--jobs``); a variant
whose evaluation JSON exists is not rerun. Each variant's training and evaluation output goes to
``<work>/<variant>.{train,eval}.log``.

    python benchmarks/pilot_recipe.py --steps 600 --episodes 5 --work outputs/exp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vlajepa.eval.report import current_command, success_cell
from vlajepa.io_utils import atomic_write_json, with_extension, write_report_files

ROOT = Path(__file__).resolve().parents[1]


def run_logged(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run ``command`` from the repository root with its output in ``log``; a failure names the log."""
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"[pilot_recipe] {' '.join(command[3:5])} failed (exit {code}); see {log}")

# name -> (peak lr, action_head.loss_samples)
VARIANTS = {
    "A_base": (3e-4, 1),
    "B_lr1e-3": (1e-3, 1),
    "D_lr2e-3": (2e-3, 1),
    "C_lr1e-3_ls4": (1e-3, 4),
}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Train and evaluate one variant (skipped when its evaluation exists); its summary row."""
    lr, draws = VARIANTS[name]
    work = Path(args.work)
    out, results = work / name, work / f"{name}.eval" / "results"
    timing = work / f"{name}.timing.json"
    if not with_extension(results, ".json").is_file():
        cli = [sys.executable, "-m", "vlajepa.cli"]
        start = time.perf_counter()
        run_logged([*cli, "train", "--method", "bc", "--robot", args.robot, "--out", str(out), "--overwrite",
                    "--config", args.config, "--steps", str(args.steps), "--threads", "1", "--no-progress",
                    "--lr", str(lr), "--set", f"model.action_head.loss_samples={draws}"], work / f"{name}.train.log")
        trained = time.perf_counter()
        run_logged([*cli, "eval", "--policy", f"checkpoint:{(out / 'checkpoints' / 'last').absolute()}",
                    "--name", name, "--tasks", "mt10", "--settings", "id", "--episodes", str(args.episodes),
                    "--workers", "1", "--videos", "0", "--out", str(results), "--no-progress"],
                   work / f"{name}.eval.log", env={"OMP_NUM_THREADS": "1", **os.environ})
        atomic_write_json(timing, {"train_s": round(trained - start, 1)})
    evaluation = json.loads(with_extension(results, ".json").read_text())
    (summary,) = [s for s in evaluation["summary"] if s["setting"] == "id"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-5:]
    return {
        "variant": name, "lr": lr, "loss_samples": draws, "steps": metrics[-1]["step"],
        "final_action_loss": round(sum(m["robot/loss/action"] for m in last) / len(last), 4),
        "train_s": json.loads(timing.read_text())["train_s"] if timing.is_file() else None,
        **{k: summary[k] for k in ("episodes", "successes", "success_rate", "ci_low", "ci_high")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="data/mt10_96px_robot_10", help="MT10 robot set (run_mt10.py collects it)")
    parser.add_argument("--config", default="default", help="preset name or YAML file")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--episodes", type=int, default=5, help="in-distribution episodes per task")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {list(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once (one thread each)")
    parser.add_argument("--work", default="outputs/exp")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "recipe" / "mt10_recipe_pilot"))
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda n: run_variant(n, args), names))
    command = current_command()
    lines = [
        "# MT10 recipe pilot: BC, learning rate and flow-matching draws per window", "",
        f"Command: `{command}`. Every variant: BC, {args.steps} steps of 32 windows, evaluated on "
        f"{args.episodes} in-distribution episodes per task (MT10). Two variants trained at once with one thread "
        "each, so training times compare within this table only.", "",
        "| variant | peak lr | draws per window | final action loss | train (s) | ID success % [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['lr']:g} | {r['loss_samples']} | {r['final_action_loss']} | "
                     f"{r['train_s']} | {success_cell(r)} |")
    write_report_files(args.results, {"command": command, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
