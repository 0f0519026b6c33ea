"""Open-loop fit: how far a policy's action chunks are from the demonstrations it was trained on.

Closed-loop success mixes perception, fitting and compounding errors. This script isolates fitting: for frames of
the training dataset (every ``--stride``-th frame of every ``--episode-stride``-th episode), it predicts the action
chunk with zero flow-matching noise (deterministic) and compares it with the recorded actions, in the environment's
action units ([-1, 1] per dimension). Reported per checkpoint and task:

* ``mae``: mean absolute error per action dimension between the predicted chunk and the recorded one;
* ``scale``: mean absolute recorded action per dimension (how large the actions are);
* ``mean_baseline``: the error of always predicting the task's mean action (what a policy that ignores the
  observation would score);
* ``shift_mae``: the error against the recorded chunk shifted by ``k`` steps (``k`` in ``--shifts``); a minimum
  away from 0 would mean the windows pair observations with the wrong actions.

    python benchmarks/fit_error.py --checkpoint bc=outputs/mt10_canonical/bc/bc/checkpoints/last \\
        --robot data/mt10_96px_robot_10 --out benchmarks/results/bc_baselines/mt10_fit_error
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlajepa.commands.evaluate import named_checkpoint
from vlajepa.constants import ACTION, OBS_STATE, TASK
from vlajepa.data.lerobot import LeRobotDataset
from vlajepa.envs.language import task_of_instruction
from vlajepa.eval.report import current_command
from vlajepa.io_utils import write_report_files
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


def sample_rows(episode_index: np.ndarray, episode_stride: int, stride: int, margin: int) -> list[np.ndarray]:
    """Per kept episode, the dataset rows to probe: every ``stride``-th frame whose shifted chunks all fit."""
    out = []
    for episode in np.unique(episode_index)[::episode_stride]:
        rows = np.nonzero(episode_index == episode)[0]
        out.append(rows[margin : len(rows) - margin : stride])
    return out


def fit_errors(
    policy: VLAJEPAPolicy, dataset: LeRobotDataset, rows_per_episode: list[np.ndarray], shifts: list[int]
) -> dict[str, dict]:
    """Per MetaWorld task (found from the episode's instruction; an unknown one stands for itself): MAE, scale,
    baselines."""
    key = dataset.meta.video_keys[0]
    actions, states = dataset.column(ACTION), dataset.column(OBS_STATE)
    horizon = policy.n_action_steps
    errors: dict[str, list] = defaultdict(list)
    shifted: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    recorded: dict[str, list] = defaultdict(list)
    for rows in tqdm(rows_per_episode, desc="episodes", unit="ep"):
        for row in rows:
            item = dataset[int(row)]
            task = task_of_instruction(item["task"]) or item["task"]
            image = (item[key].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
            chunk = policy.predict_action_chunk({key: image, OBS_STATE: states[row], TASK: item["task"]})
            target = actions[row : row + horizon]
            errors[task].append(np.abs(chunk - target).mean(axis=0))
            recorded[task].append(target)
            for k in shifts:
                shifted[task][k].append(float(np.abs(chunk - actions[row + k : row + k + horizon]).mean()))
    report = {}
    for task in errors:
        chunks = np.concatenate(recorded[task])  # (n * horizon, A)
        report[task] = {
            "frames": len(errors[task]),
            "mae": np.mean(errors[task], axis=0).round(4).tolist(),
            "scale": np.abs(chunks).mean(axis=0).round(4).tolist(),
            "mean_baseline": np.abs(chunks - chunks.mean(axis=0)).mean(axis=0).round(4).tolist(),
            "shift_mae": {str(k): round(float(np.mean(v)), 4) for k, v in shifted[task].items()},
        }
    return report


def markdown(report: dict) -> str:
    lines = [
        f"# Open-loop fit on `{report['robot']}`",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']} s. Zero-noise chunks of {report['horizon']} actions against the recorded "
        "ones, in action units ([-1, 1]); each cell is the mean over the action dimensions (x, y, z, gripper).",
        "",
        "| checkpoint | task | frames | MAE | mean-action baseline | mean abs action | "
        + " | ".join(f"MAE shifted {k:+d}" for k in report["shifts"])
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(report["shifts"]),
    ]
    for name, tasks in report["checkpoints"].items():
        for task, r in tasks.items():
            shifts = " | ".join(f"{r['shift_mae'][str(k)]:.3f}" for k in report["shifts"])
            lines.append(
                f"| {name} | {task} | {r['frames']} | {np.mean(r['mae']):.3f} | {np.mean(r['mean_baseline']):.3f} | "
                f"{np.mean(r['scale']):.3f} | {shifts} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH", type=named_checkpoint,
                        help="a policy checkpoint (repeat)")
    parser.add_argument("--robot", required=True, help="a LeRobot dataset: the checkpoints' training data (fit), or "
                        "demonstrations from other seeds (generalization to new layouts)")
    parser.add_argument("--episode-stride", type=int, default=3, help="probe every k-th episode")
    parser.add_argument("--stride", type=int, default=4, help="probe every k-th frame of an episode")
    parser.add_argument("--shifts", type=int, nargs="+", default=[-2, -1, 0, 1, 2], help="action offsets compared")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix for .json and .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = LeRobotDataset(args.robot)
    margin = max(abs(k) for k in args.shifts)
    policies = {name: VLAJEPAPolicy.from_pretrained(Path(path), noise_scale=0.0) for name, path in args.checkpoint}
    horizons = {policy.n_action_steps for policy in policies.values()}
    if len(horizons) > 1:  # one report states one chunk length, and the checkpoints share the probed frames
        raise SystemExit(f"the checkpoints execute chunks of different lengths {sorted(horizons)}; probe them apart")
    (horizon,) = horizons
    rows = sample_rows(dataset.column("episode_index"), args.episode_stride, args.stride, margin + horizon)
    checkpoints = {name: fit_errors(policy, dataset, rows, args.shifts) for name, policy in policies.items()}
    report = {"command": current_command(), "wall_time_s": round(time.perf_counter() - start, 1),
              "robot": args.robot, "horizon": horizon, "shifts": args.shifts, "checkpoints": checkpoints}
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
