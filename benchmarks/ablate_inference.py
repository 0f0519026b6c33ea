"""Inference-time ablations and a memorization check of trained MT10 checkpoints, without retraining.

For each checkpoint (``--checkpoint NAME=PATH``, repeatable) the in-distribution success rate is measured under:

- ``default``: the benchmark's held-out evaluation seeds and the checkpoint's own settings;
- ``n_action_steps=K``: K actions executed per predicted chunk instead of the whole chunk (more closed-loop);
- ``euler_steps=N``: N flow-matching Euler steps per chunk (the inference latency is roughly linear in N);
- ``noise_scale=S``: the flow-matching noise scaled by S (a sampling temperature; 0 gives deterministic chunks);
- ``training_seeds``: the initial states of the training demonstrations (collection seed ``s``: task ``i``'s
  attempts are seeds ``s + 100_000 * i + a``, and collection keeps the first successful attempts, so the scripted
  expert is run on the same seeds and must succeed on all of them for these to be exactly the demos' states).
  Success here but not on held-out seeds points at generalization from few demos; failure on both points at
  under-fitting.

Every variant runs the same tasks and episode count; results are written as JSON (rows in the evaluation schema with
a ``variant`` field, plus a per-variant summary pooled over tasks with Wilson intervals) and a markdown table.

    python benchmarks/ablate_inference.py \\
        --checkpoint cotrain-frozen=outputs/mt10/cotrain-frozen/checkpoints/last \\
        --out benchmarks/results/recipe/mt10_inference_ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from vlajepa.collect import ATTEMPT_STRIDE
from vlajepa.commands.evaluate import named_checkpoint, parse_policy, parse_tasks
from vlajepa.eval.report import current_command, rows_from_episodes, success_cell
from vlajepa.eval.report import summarize as pool_tasks
from vlajepa.eval.runner import EvalConfig, evaluate
from vlajepa.io_utils import git_commit, with_extension, write_report_files


def variants(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """(label, overrides) pairs; overrides hold ``n_action_steps``, ``euler_steps``, ``noise_scale`` or
    ``training_seeds``."""
    out: list[tuple[str, dict[str, Any]]] = [("default", {})]
    out += [(f"n_action_steps={k}", {"n_action_steps": k}) for k in args.n_action_steps]
    out += [(f"euler_steps={n}", {"euler_steps": n}) for n in args.euler_steps]
    out += [(f"noise_scale={s:g}", {"noise_scale": s}) for s in args.noise_scales]
    if args.training_seeds:
        out.append(("training_seeds", {"training_seeds": True}))
    return out


def run_variant(policy_text: str, name: str, overrides: dict[str, Any], base: EvalConfig,
                collection_seed: int) -> tuple[list[dict[str, Any]], float]:
    """Evaluate one variant; ``training_seeds`` replays collection's attempt seeds (task order = collection's)."""
    policy = parse_policy(policy_text, name, overrides.get("euler_steps"), overrides.get("noise_scale"))
    config = dataclasses.replace(base, n_action_steps=overrides.get("n_action_steps"))
    if overrides.get("training_seeds"):
        config = dataclasses.replace(config, seed=collection_seed, task_seed_stride=ATTEMPT_STRIDE)
    episodes, wall = evaluate(policy, config)
    return rows_from_episodes(name, episodes), wall


def table(summary: list[dict[str, Any]]) -> str:
    lines = ["| checkpoint | variant | in-distribution success % [95 % CI] | episodes | wall time (s) |",
             "|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['method']} | {s['variant']} | {success_cell(s)} | "
                     f"{s['episodes']} | {s['wall_time_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH", type=named_checkpoint,
                        help="a trained checkpoint directory and the name its rows get (repeat)")
    parser.add_argument("--tasks", default="mt10", help="mt10 or a comma-separated list (collection order)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task per variant")
    parser.add_argument("--n-action-steps", type=int, nargs="*", default=[4], help="variants (empty: none)")
    parser.add_argument("--euler-steps", type=int, nargs="*", default=[3, 10], help="variants (empty: none)")
    parser.add_argument("--noise-scales", type=float, nargs="*", default=[], help="variants (default: none)")
    parser.add_argument("--no-training-seeds", dest="training_seeds", action="store_false",
                        help="skip the training-seed (memorization) variant")
    parser.add_argument("--collection-seed", type=int, default=0, help="the robot data's `vlajepa collect --seed`")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="outputs/ablate_inference/results", help="output prefix (.json, .md)")
    args = parser.parse_args()

    from vlajepa.policies import load_policy_config

    base = EvalConfig(tasks=parse_tasks(args.tasks), episodes=args.episodes, workers=args.workers)
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    start = time.perf_counter()
    jobs = []  # (name, policy, evaluation config, variants)
    for name, path in args.checkpoint:
        camera = load_policy_config(path).cameras  # render every camera the policy was trained on
        jobs.append((name, f"checkpoint:{path}", dataclasses.replace(base, camera=camera), variants(args)))
    if args.training_seeds:  # the expert must solve the replayed seeds for them to be the demonstrations' starts
        jobs.append(("expert", "expert", base, [("training_seeds", {"training_seeds": True})]))
    for name, policy_text, config, todo in jobs:
        for label, overrides in todo:
            print(f"[ablate] {name}: {label}", flush=True)
            variant_rows, wall = run_variant(policy_text, name, overrides, config, args.collection_seed)
            for row in variant_rows:
                row["variant"] = label
            rows += variant_rows
            pooled = pool_tasks(variant_rows)[0]
            pooled.update(variant=label, wall_time_s=round(wall, 1), checkpoint=policy_text.removeprefix("checkpoint:"))
            summary.append(pooled)
            print(table([pooled]).splitlines()[-1], flush=True)
    report = {
        "command": current_command(),
        "git_commit": git_commit(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "episodes_per_task": args.episodes,
        "summary": summary,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_task = ["| checkpoint | variant | task | success % | episodes |", "|---|---|---|---|---|"]
    per_task += [f"| {r['method']} | {r['variant']} | {r['task']} | {100 * r['success_rate']:.0f} | {r['episodes']} |"
                 for r in rows]
    text = (f"# Inference ablations and memorization check (in distribution)\n\nCommand: `{report['command']}`\n\n"
            f"Wall time: {report['wall_time_s']} s. {args.episodes} episodes per task per variant; success % "
            f"[95 % Wilson interval] (successes/episodes), pooled over tasks.\n\n{table(summary)}\n\n"
            f"## Per task\n\n" + "\n".join(per_task) + "\n")
    write_report_files(out, report, text)
    print(table(summary))
    print(f"wrote {with_extension(out, '.json')} and {with_extension(out, '.md')}")


if __name__ == "__main__":
    main()
