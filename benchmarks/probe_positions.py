"""How well does a pixel policy locate the objects and the goal? Error of its scene-state read-out, in centimetres.

A checkpoint trained with ``model.environment_state_dim`` (``run_mt10.py --environment-state``) has a head that
predicts ``observation.environment_state`` (both objects' and the goal's xyz) from the student's embodied tokens,
which see only the current image, the hand state and the instruction. This script runs that head on every
``--stride``-th frame of two datasets recorded with the label (``vlajepa collect robot --environment-state``):

* ``--train``: the checkpoint's own training data, or part of it (how well the head fits; the collector's first
  ``N`` demonstrations of a seed are the same for any larger ``N``, so the 10-demonstration set lies inside the
  100-demonstration one);
* ``--heldout``: demonstrations from other seeds, so other layouts (how well it generalizes to a new scene).

Per MetaWorld task (from the instruction) and part (``obj1``, ``obj2``, ``goal``) it reports the mean absolute
error of each coordinate in centimetres, beside the error of always answering the task's mean position over the
training frames: a head that does not read positions off the image scores that baseline on held-out frames.
Parts that never move in a task's training data (e.g. a missing second object) are left out.

    vlajepa collect robot --tasks mt10 --episodes-per-task 10 --seed 50000 --environment-state \\
        --out data/heldout_mt10_96px_robot_10_envstate
    python benchmarks/probe_positions.py --checkpoint bc=outputs/s8/bc_envstate/bc/checkpoints/last \\
        --train data/mt10_96px_robot_10_envstate --heldout data/heldout_mt10_96px_robot_10_envstate \\
        --out benchmarks/results/position_readout/mt10_position_probe
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
from vlajepa.constants import OBS_ENV_STATE, TASK
from vlajepa.data.windows import RobotWindows, collate_windows
from vlajepa.envs.language import task_of_instruction
from vlajepa.envs.state import ENVIRONMENT_STATE_NAMES
from vlajepa.eval.report import current_command
from vlajepa.io_utils import write_report_files
from vlajepa.policy import VLAJEPAPolicy

PARTS = ("obj1", "obj2", "goal")
MOVING_CM = 0.1  # a part whose position varies less than this (std, cm) over a task's training frames is left out


def read_out(policy: VLAJEPAPolicy, root: str, stride: int, batch_size: int = 64) -> dict[str, dict[str, np.ndarray]]:
    """Per task: the head's predictions and the labels (metres, ``(frames, 9)``) on every ``stride``-th frame."""
    model = policy.model.eval()
    if model.environment_state_head is None:
        raise SystemExit(f"{root}: the checkpoint has no scene-state read-out (train with model.environment_state_dim)")
    windows = RobotWindows(root, model.config, normalizer=policy.normalizer, future_images=False)
    rows = list(range(0, len(windows), stride))
    out: dict[str, dict[str, list]] = defaultdict(lambda: {"predicted": [], "label": []})
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc=Path(root).name, unit="batch"):
            batch = collate_windows([windows[row] for row in rows[start : start + batch_size]])
            predicted = model.predict_environment_state(batch).double().numpy()
            predicted = policy.normalizer.unnormalize(OBS_ENV_STATE, predicted)
            label = policy.normalizer.unnormalize(OBS_ENV_STATE, batch[OBS_ENV_STATE].double().numpy())
            for text, p, y in zip(batch[TASK], predicted, label, strict=True):
                task = task_of_instruction(text) or text
                out[task]["predicted"].append(p)
                out[task]["label"].append(y)
    return {task: {k: np.stack(v) for k, v in parts.items()} for task, parts in out.items()}


def report_for(train: dict, heldout: dict) -> dict[str, dict]:
    """Per task and moving part: frames and mean absolute error per axis (cm) of the head and the mean baseline."""
    report = {}
    for task in train:
        mean = train[task]["label"].mean(axis=0)
        spread = train[task]["label"].std(axis=0) * 100
        parts = {}
        for i, part in enumerate(PARTS):
            axes = slice(3 * i, 3 * i + 3)
            if spread[axes].max() < MOVING_CM:
                continue

            def cm(error: np.ndarray, axes=axes) -> list[float]:
                return (np.abs(error[:, axes]).mean(axis=0) * 100).round(2).tolist()

            parts[part] = {
                "train": cm(train[task]["predicted"] - train[task]["label"]),
                "heldout": cm(heldout[task]["predicted"] - heldout[task]["label"]) if task in heldout else None,
                "heldout_mean_baseline": cm(mean - heldout[task]["label"]) if task in heldout else None,
                "train_spread_std": spread[axes].round(2).tolist(),
            }
        report[task] = {
            "frames": {"train": len(train[task]["label"]), "heldout": len(heldout.get(task, {}).get("label", []))},
            "parts": parts,
        }
    return report


def _xyz(values: list[float] | None) -> str:
    return "–" if values is None else " / ".join(f"{v:.1f}" for v in values)


def markdown(report: dict) -> str:
    lines = [
        "# Where are the objects and the goal? The scene-state read-out on training and held-out layouts",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']} s. Mean absolute error in cm, x / y / z, of the read-out "
        "head's prediction from the current image, hand state and instruction; the baseline always answers the "
        "task's mean position over the training frames. Parts that do not move in a task are left out. "
        f"Training frames: `{report['train']}`; held-out frames: `{report['heldout']}` (other seeds, so other "
        "layouts).",
        "",
        "| checkpoint | task | part | training frames | held-out frames | held-out mean baseline | spread (std) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, checkpoint in report["checkpoints"].items():
        for task, r in checkpoint["tasks"].items():
            for part, errors in r["parts"].items():
                lines.append(
                    f"| {name} | {task} | {part} | {_xyz(errors['train'])} | {_xyz(errors['heldout'])} | "
                    f"{_xyz(errors['heldout_mean_baseline'])} | {_xyz(errors['train_spread_std'])} |"
                )
        lines.append(
            f"| {name} | **all tasks** | all | {_xyz(checkpoint['pooled']['train'])} | "
            f"{_xyz(checkpoint['pooled']['heldout'])} | {_xyz(checkpoint['pooled']['heldout_mean_baseline'])} | |"
        )
    return "\n".join(lines) + "\n"


def pooled(tasks: dict) -> dict[str, list[float]]:
    """Mean over every (task, moving part) cell of each error column, per axis."""
    out = {}
    for column in ("train", "heldout", "heldout_mean_baseline"):
        cells = [p[column] for r in tasks.values() for p in r["parts"].values() if p[column] is not None]
        out[column] = np.mean(cells, axis=0).round(2).tolist() if cells else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH", type=named_checkpoint,
                        help="a checkpoint with a scene-state read-out (repeat)")
    parser.add_argument("--train", required=True, help="its training dataset (with observation.environment_state)")
    parser.add_argument("--heldout", required=True, help="demonstrations from other seeds, with the same label")
    parser.add_argument("--stride", type=int, default=3, help="probe every k-th frame")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix for .json and .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    checkpoints = {}
    for name, path in args.checkpoint:
        policy = VLAJEPAPolicy.from_pretrained(Path(path))
        tasks = report_for(read_out(policy, args.train, args.stride), read_out(policy, args.heldout, args.stride))
        checkpoints[name] = {"tasks": tasks, "pooled": pooled(tasks)}
    report = {"command": current_command(), "wall_time_s": round(time.perf_counter() - start, 1),
              "train": args.train, "heldout": args.heldout, "parts": list(ENVIRONMENT_STATE_NAMES),
              "checkpoints": checkpoints}
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
