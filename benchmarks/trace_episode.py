"""Trace a checkpoint policy through single episodes: where the hand is, where the first object is, what the expert
would do, and what the policy does, once per predicted chunk.

Success rates say how often a policy fails, not how. This replays evaluation episodes exactly as ``vlajepa eval``
runs them (same seeds, same policy seeding, whole chunks executed) and prints, for every chunk, the hand position,
the first object's position (``observation.environment_state``; read from the simulator for the trace only, the
policy never sees it), their horizontal distance, the scripted expert's action for the same state and the policy's
first and mean action of the chunk. Written as JSON beside a markdown table.

    python benchmarks/trace_episode.py --checkpoint outputs/s11/lossless/bc/checkpoints/last \\
        --task button-press-topdown-v3 --seeds 1000000,1000002 \\
        --out benchmarks/results/feature_probe/trace_bc_button_press
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vlajepa.constants import OBS_STATE
from vlajepa.envs import MetaWorldEnv
from vlajepa.eval.report import current_command
from vlajepa.io_utils import write_report_files
from vlajepa.policies.protocol import seed_policy
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


def rounded(values: np.ndarray, digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


def trace(policy: VLAJEPAPolicy, env: MetaWorldEnv, seed: int) -> dict:
    """One episode; a row per chunk (positions in m, actions in [-1, 1])."""
    obs, _ = env.reset(seed=seed)
    seed_policy(policy, seed)
    policy.reset()
    rows, step, success, done = [], 0, False, False
    while not done:
        hand, obj = obs[OBS_STATE][:3], env.environment_state()[:3]
        expert = env.expert_action()
        chunk = np.asarray(policy.predict_action_chunk(obs))
        rows.append({
            "step": step, "hand": rounded(hand, 3), "object": rounded(obj, 3),
            "xy_distance": round(float(np.linalg.norm(hand[:2] - obj[:2])), 3),
            "expert_action": rounded(expert, 2), "policy_first_action": rounded(chunk[0], 2),
            "policy_mean_action": rounded(chunk.mean(axis=0), 2),
        })
        for action in chunk:
            obs, _, terminated, truncated, info = env.step(action)
            step += 1
            success = success or bool(info["success"])
            if terminated or truncated or success:
                done = True
                break
    return {"seed": seed, "instruction": env.instruction, "success": success, "steps": step, "chunks": rows}


def markdown(report: dict) -> str:
    lines = [
        f"# Episode traces: `{report['checkpoint']}` on {report['task']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']} s. One row per predicted chunk: hand and first-object xyz (m), their "
        "horizontal distance, the scripted expert's action for that state and the policy's first and mean action "
        "of its chunk (x, y, z, gripper in [-1, 1]).",
    ]
    for episode in report["episodes"]:
        lines += [
            "",
            f"## Seed {episode['seed']}: \"{episode['instruction']}\", "
            f"{'success' if episode['success'] else 'failure'} after {episode['steps']} steps",
            "",
            "| step | hand | object | xy distance | expert action | policy first action | policy mean action |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in episode["chunks"]:
            cells = [r["hand"], r["object"], r["xy_distance"], r["expert_action"], r["policy_first_action"],
                     r["policy_mean_action"]]
            lines.append(f"| {r['step']} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    parser.add_argument("--task", required=True, help="MetaWorld task name (-v3)")
    parser.add_argument("--seeds", required=True, help="comma-separated episode seeds (vlajepa eval: 1000000 + e "
                        "for episode e of the first task)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix for .json and .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    policy = VLAJEPAPolicy.from_pretrained(args.checkpoint)
    config = policy.config
    env = MetaWorldEnv(args.task, image_size=config.image_size, camera=config.cameras)
    try:
        episodes = [trace(policy, env, int(seed)) for seed in args.seeds.split(",")]
    finally:
        env.close()
    report = {"command": current_command(), "wall_time_s": round(time.perf_counter() - start, 1),
              "checkpoint": args.checkpoint, "task": args.task, "episodes": episodes}
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
