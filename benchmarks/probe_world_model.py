"""Does the world model use the student's latent actions? Its error with the student's own tokens and with others.

VLA-JEPA's claim rests on one path: action-free video can only teach the student through the latent-action tokens
it hands the predictor (with a frozen target, the world-model loss reaches the student nowhere else). If the
predictor forecasts the future latents as well without those tokens, the video trains the predictor but not the
policy. This script measures how much the predictor's error depends on them, on windows of the robot data and of
the video set, by replacing each window's tokens with:

* ``own``: the student's tokens for this window (what training sees);
* ``same_task``: the tokens of another window of the same task in the batch (task identity kept, this scene's
  specifics lost);
* ``other``: the tokens of another window of the batch, whatever its task;
* ``mean``: the batch mean of the tokens (no per-window information at all).

Each is scored per predicted step in two modes: ``teacher`` (teacher forcing, the true latents of frames ``0..t``
in context, as the training loss) and ``rollout`` (imagined from frame 0 alone, feeding predictions back; the
first step of both is the same prediction), and for a checkpoint trained with ``predictor.context_dropout``
also ``hidden`` (teacher forcing with the context latents replaced by the mask token: the tokens are the only
source of the future). ``copy`` is the error of predicting that nothing changes
(``z_{t+1} = z_t``), and ``gain`` is how much of the error above ``own`` the tokens remove, per step:
``(mean - own) / (copy - own)`` (0: the tokens are ignored; near 1: without them the predictor is no better than
copying the frame; above 1: worse than copying). Errors are the model's own distance (``predictor.loss``) on pooled
target latents.

How much is there to explain? On the robot data (``--linear-stride``), ridge regressions predict the first step's
change of the pooled latents ``z_{t+s} - z_t`` on held-out episodes (every fifth; the ridge strength is chosen on
the last fifth of the training episodes) from ``z_t`` alone, from the ``s`` true actions alone and from both: if the
actions add little to ``z_t``, the future is a function of the current frame (a deterministic demonstrator), and a
predictor that sees the frame has no use for latent actions.

    python benchmarks/probe_world_model.py --checkpoint cotrain=outputs/s18/cotrain/cotrain-frozen/checkpoints/last \\
        --robot data/mt10_96px_robot_10 --video data/mt10_96px_video_50 --out benchmarks/results/wm_probe/mt10_wm_probe
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from vlajepa.commands.evaluate import named_checkpoint
from vlajepa.constants import ACTION, ACTION_IS_PAD, FUTURE_IS_PAD, TASK
from vlajepa.data.windows import RobotWindows, VideoWindows, collate_windows
from vlajepa.envs.language import task_of_instruction
from vlajepa.eval.report import current_command
from vlajepa.io_utils import write_report_files
from vlajepa.nn.predictor import pool_latents
from vlajepa.policies.vla_jepa import VLAJEPAPolicy

CONDITIONS = ("own", "same_task", "other", "mean")
RIDGE_STRENGTHS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
MODES = ("teacher", "rollout", "hidden")


def derangement(groups: Sequence[Any], generator: torch.Generator) -> tuple[Tensor, int]:
    """For each index ``i``, another index ``j != i`` with ``groups[j] == groups[i]`` (a random cycle through each
    group's members); an index alone in its group maps to itself. Returns the indices and how many stayed."""
    source = torch.arange(len(groups))
    members: dict[Any, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    alone = 0
    for indices in members.values():
        if len(indices) == 1:
            alone += 1
            continue
        order = torch.tensor(indices)[torch.randperm(len(indices), generator=generator)]
        source[order] = order.roll(1)
    return source, alone


def condition_variants(
    tokens: Tensor, tasks: Sequence[str], generator: torch.Generator
) -> tuple[dict[str, Tensor], int]:
    """The student's latent-action tokens ``(b, s, k, d)`` and their replacements (see the module docstring); also
    how many windows had no other window of their task in the batch (their ``same_task`` tokens are their own)."""
    same_task, alone = derangement(tasks, generator)
    other, _ = derangement([0] * len(tasks), generator)
    variants = {
        "own": tokens,
        "same_task": tokens[same_task],
        "other": tokens[other],
        "mean": tokens.mean(dim=0, keepdim=True).expand_as(tokens),
    }
    return variants, alone


@torch.inference_mode()
def batch_errors(model: VLAJEPAPolicy, batch: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """Per-window, per-step errors ``(b, s)`` of every condition and mode, the copy baseline and the valid mask."""
    config = model.config
    tasks = [task_of_instruction(text) or text for text in batch[TASK]]
    tokens = model.encode(batch).latent_action_tokens  # (b, s, k, d)
    latents = pool_latents(model.target_latents(batch), len(config.cameras), config.predictor.latent_pool)
    context, target = latents[:, :-1], latents[:, 1:]  # (b, s, n, d) each
    distance_to_target = model.latent_step_distance
    variants, alone = condition_variants(tokens, tasks, generator)
    errors = {"copy": distance_to_target(context, target)}
    for name, conditions in variants.items():
        errors[f"teacher/{name}"] = distance_to_target(model.predictor(context, conditions), target)
        errors[f"rollout/{name}"] = distance_to_target(model.predictor.rollout(latents[:, 0], conditions), target)
        if model.predictor.mask_token is not None:
            hide = torch.ones(len(tasks), dtype=torch.bool, device=context.device)
            errors[f"hidden/{name}"] = distance_to_target(model.predictor(context, conditions, hide), target)
    return {"errors": errors, "valid": ~batch[FUTURE_IS_PAD][:, 1:], "alone": alone}


def probe_windows(
    model: VLAJEPAPolicy, windows: Any, stride: int, batch_size: int, seed: int, desc: str
) -> dict[str, Any]:
    """Mean error per step of every entry of :func:`batch_errors` over every ``stride``-th window, batches of
    ``batch_size`` windows in a seeded random order (so a batch mixes tasks and scenes)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(0, len(windows), stride)
    rows = rows[torch.randperm(len(rows), generator=generator)]
    sums: dict[str, Tensor] = {}
    counts: Tensor | None = None
    alone = 0
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        batch = collate_windows([windows[int(row)] for row in rows[start : start + batch_size]])
        result = batch_errors(model, batch, generator)
        valid = result["valid"].to(torch.float64)  # (b, s)
        for name, error in result["errors"].items():
            sums[name] = sums.get(name, 0) + (error.double() * valid).sum(dim=0)
        counts = valid.sum(dim=0) if counts is None else counts + valid.sum(dim=0)
        alone += result["alone"]
    means = {name: (total / counts.clamp_min(1)).tolist() for name, total in sums.items()}
    return {"windows": len(rows), "alone_in_batch": alone, "steps_counted": counts.long().tolist(), "error": means}


def change_samples(
    model: VLAJEPAPolicy, windows: RobotWindows, stride: int, batch_size: int, desc: str
) -> dict[str, np.ndarray]:
    """Per window whose first step and its actions are inside the episode: the pooled latents ``z_t`` and their
    change over one predicted step (flattened), the step's true normalized actions, and the episode index."""
    config = model.config
    episodes = windows.dataset.column("episode_index")
    rows = list(range(0, len(windows), stride))
    out: dict[str, list] = defaultdict(list)
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
            chunk = rows[start : start + batch_size]
            batch = collate_windows([windows[row] for row in chunk])
            latents = pool_latents(model.target_latents(batch), len(config.cameras), config.predictor.latent_pool)
            keep = ~batch[FUTURE_IS_PAD][:, 1] & ~batch[ACTION_IS_PAD][:, : config.frame_stride].any(dim=1)
            out["z"].append(latents[keep, 0].flatten(1).numpy())
            out["change"].append((latents[keep, 1] - latents[keep, 0]).flatten(1).numpy())
            out["actions"].append(batch[ACTION][keep, : config.frame_stride].flatten(1).numpy())
            out["episode"].append(episodes[np.asarray(chunk)][keep.numpy()])
    return {key: np.concatenate(values) for key, values in out.items()}


def distance(diff: np.ndarray, loss: str) -> float:
    """Mean per-element distance (``predictor.loss``) of prediction errors ``diff``."""
    return float(np.abs(diff).mean() if loss == "l1" else np.square(diff).mean())


def ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, strength: float) -> np.ndarray:
    """Predictions for ``x_test`` of a ridge regression fitted on standardized training inputs (``strength`` per
    training row)."""
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    a, b = (x_train - mean) / scale, (x_test - mean) / scale
    y_mean = y_train.mean(axis=0)
    weights = np.linalg.solve(a.T @ a + strength * len(a) * np.eye(a.shape[1]), a.T @ (y_train - y_mean))
    return b @ weights + y_mean


def linear_baselines(samples: Mapping[str, np.ndarray], loss: str) -> dict[str, Any]:
    """Held-out errors of predicting no change, the mean change and ridge regressions from each input."""
    episodes = np.unique(samples["episode"])
    test = np.isin(samples["episode"], episodes[::5])
    train_episodes = episodes[~np.isin(episodes, episodes[::5])]
    select = np.isin(samples["episode"], train_episodes[-max(1, len(train_episodes) // 5) :])
    fit = ~test & ~select
    inputs = {
        "z_t": samples["z"],
        "actions": samples["actions"],
        "z_t+actions": np.concatenate([samples["z"], samples["actions"]], axis=1),
    }
    y = samples["change"].astype(np.float64)
    errors = {"copy": distance(y[test], loss), "mean_change": distance(y[test] - y[~test].mean(axis=0), loss)}
    strengths = {}
    for name, x in inputs.items():
        x = x.astype(np.float64)
        strengths[name] = min(
            RIDGE_STRENGTHS,
            key=lambda k, x=x: distance(ridge_predict(x[fit], y[fit], x[select], k) - y[select], loss),
        )
        errors[name] = distance(ridge_predict(x[~test], y[~test], x[test], strengths[name]) - y[test], loss)
    return {
        "windows": {"fit": int((~test).sum()), "test": int(test.sum())},
        "episodes_held_out": len(episodes[::5]),
        "ridge_strength": strengths,
        "error": {k: round(v, 5) for k, v in errors.items()},
    }


def gains(error: Mapping[str, Sequence[float]], margin: float = 0.01) -> dict[str, list[float | None]]:
    """Per mode and step, ``(mean - own) / (copy - own)``: the share of the error left without the tokens that
    they remove (None where ``own`` is not at least ``margin`` of the copy error below it: the ratio of two
    near-zero differences means nothing)."""
    out = {}
    for mode in (m for m in MODES if f"{m}/own" in error):
        values = []
        for copy, own, mean in zip(error["copy"], error[f"{mode}/own"], error[f"{mode}/mean"], strict=True):
            values.append(round((mean - own) / (copy - own), 4) if copy - own > margin * copy else None)
        out[mode] = values
    return out


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# Does the world model use the student's latent actions?",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']} s. Mean {report['loss']} error per predicted step on pooled target "
        "latents, with the student's own latent-action tokens and with replacements (`benchmarks/probe_world_model.py`"
        " docstring). gain = (mean - own) / (copy - own).",
        "",
        "| checkpoint | data | windows | mode | step | copy | own | same task | other | mean | gain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sources in report["checkpoints"].items():
        for source, result in sources.items():
            if source == "linear":
                continue
            error = result["error"]
            for mode in result["gain"]:
                for step, copy in enumerate(error["copy"]):
                    cells = " | ".join(f"{error[f'{mode}/{c}'][step]:.4f}" for c in CONDITIONS)
                    gain = result["gain"][mode][step]
                    lines.append(
                        f"| {name} | {source} | {result['windows']} | {mode} | {step + 1} | {copy:.4f} | {cells} | "
                        f"{'-' if gain is None else f'{gain:.3f}'} |"
                    )
    linear = {name: sources["linear"] for name, sources in report["checkpoints"].items() if "linear" in sources}
    if linear:
        lines += [
            "",
            "Held-out error of the first step's latent change on the robot data (ridge regressions; "
            "`benchmarks/probe_world_model.py` docstring):",
            "",
            "| checkpoint | windows fit / test | no change | mean change | from z_t | from the actions | "
            "from z_t and the actions |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, result in linear.items():
            e = result["error"]
            lines.append(
                f"| {name} | {result['windows']['fit']} / {result['windows']['test']} | {e['copy']:.4f} | "
                f"{e['mean_change']:.4f} | {e['z_t']:.4f} | {e['actions']:.4f} | {e['z_t+actions']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH", type=named_checkpoint,
                        help="a VLA-JEPA checkpoint with a world model (repeat)")
    parser.add_argument("--robot", help="a LeRobot dataset (the checkpoints' robot data)")
    parser.add_argument("--video", help="an action-free video set (the checkpoints' video data)")
    parser.add_argument("--robot-stride", type=int, default=10, help="probe every k-th robot window")
    parser.add_argument("--video-stride", type=int, default=50, help="probe every k-th video window")
    parser.add_argument("--linear-stride", type=int, default=2,
                        help="robot windows for the ridge regressions: every k-th (0: skip them)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix for .json and .md")
    args = parser.parse_args()
    if not (args.robot or args.video):
        parser.error("give --robot, --video or both")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    checkpoints: dict[str, dict[str, Any]] = {}
    losses = set()
    linear_by_target: dict[tuple, dict[str, Any]] = {}  # the regressions depend on the frozen target alone
    for name, path in args.checkpoint:
        policy = VLAJEPAPolicy.from_pretrained(Path(path))
        model = policy.eval()
        if model.predictor is None:
            raise SystemExit(f"{path}: the checkpoint has no world model (trained with use_world_model=false)")
        losses.add(model.config.predictor.loss)
        sources = {}
        if args.robot:
            windows = RobotWindows(args.robot, model.config, normalizer=policy.normalizer, with_actions=False)
            sources["robot"] = probe_windows(model, windows, args.robot_stride, args.batch_size, args.seed,
                                             f"{name} robot")
        if args.video:
            windows = VideoWindows(args.video, model.config)
            sources["video"] = probe_windows(model, windows, args.video_stride, args.batch_size, args.seed,
                                             f"{name} video")
        for result in sources.values():
            result["error"] = {k: [round(v, 5) for v in values] for k, values in result["error"].items()}
            result["gain"] = gains(result["error"])
        target = (model.config.target.kind, model.config.target.checkpoint, model.config.predictor.latent_pool)
        if args.robot and args.linear_stride > 0 and (target[0] != "frozen" or target not in linear_by_target):
            windows = RobotWindows(args.robot, model.config, normalizer=policy.normalizer, future_images=True)
            samples = change_samples(model, windows, args.linear_stride, args.batch_size, f"{name} linear")
            linear_by_target[target] = linear_baselines(samples, model.config.predictor.loss)
        if target in linear_by_target:
            sources["linear"] = linear_by_target[target]
        checkpoints[name] = sources
    report = {"command": current_command(), "wall_time_s": round(time.perf_counter() - start, 1),
              "loss": "/".join(sorted(losses)), "robot": args.robot, "video": args.video,
              "checkpoints": checkpoints}
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
