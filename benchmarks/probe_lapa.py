"""Probes of the argument against LAPA's latent actions (issue: LAPA baseline; arXiv 2410.11758 vs VLA-JEPA).

(a) **Action content.** Ridge regressions, fitted on the robot data's training episodes and scored on held-out
    episodes (every fourth), predict the true normalized action chunk that follows ``o_t`` from: the latent action
    model's codes of ``(o_t, o_{t+H})`` (one-hot, ``num_tokens x codebook_size``), each ``--checkpoint``'s
    latent-action tokens (VLA-JEPA's, or a LAPA student's, from ``o_t`` and the instruction only), and the robot
    state alone (a reference). R² pools every action dimension and step (1 - SSE / SST on the held-out windows);
    the ridge strength is chosen on the last fifth of the training episodes. The codes see the future frame and the
    tokens do not, so equal R² would say the tokens carry as much about the action as the codes that see its result.
(b) **Camera versus robot.** On MetaWorld, the scripted expert runs each task; at several steps ``t`` of each
    episode the probe renders ``o_t`` and, after ``H`` expert steps, ``o_{t+H}``, both from the training camera and
    again from the camera perturbation's moved view (the benchmark's ``camera`` perturbation, its severity and
    seeded draws). It reports the fraction of code tokens that change:

    * ``camera_reprojected``: the same frame pair re-rendered from the moved camera (the same robot motion) against
      the codes of the original pair: ideally 0 (the action did not change);
    * ``camera_moves``: the robot still and only the camera moving between the frames, ``(o_t, o_t')`` with
      ``o_t'`` the moved view, against the still pair ``(o_t, o_t)``: ideally 0 (nothing was done);
    * ``robot_moves``: the robot moving ``H`` steps under the training camera, ``(o_t, o_{t+H})`` against the still
      pair: what an action changes.

    A camera that changes as many codes as the robot does is the leakage VLA-JEPA's design removes.

    python benchmarks/probe_lapa.py --lam outputs/mt10/lam --robot data/mt10_96px_robot_10 \\
        --checkpoint vla-jepa=outputs/mt10/finetune-frozen/checkpoints/last \\
        --checkpoint lapa=outputs/mt10/lapa/checkpoints/last --out benchmarks/results/lapa/mt10_probe
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vlajepa.commands.evaluate import named_checkpoint, parse_tasks
from vlajepa.config import PolicyConfig
from vlajepa.constants import ACTION, ACTION_IS_PAD, FUTURE_IS_PAD, OBS_STATE, future_image_key
from vlajepa.data.windows import RobotWindows, collate_windows
from vlajepa.io_utils import write_report_files
from vlajepa.policies import load_policy
from vlajepa.policies.lapa import LatentActionModel

if __package__ in (None, ""):  # run as `python benchmarks/probe_lapa.py`: import sibling scripts as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.probe_world_model import ridge_predict  # noqa: E402

STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


# ---------------------------------------------------------------------------- (a) action content


def held_out(episode: np.ndarray) -> np.ndarray:
    """True for the windows of held-out episodes: every fourth episode (the last one when there are fewer than 4)."""
    episodes = np.unique(episode)
    return np.isin(episode, episodes[3::4] if len(episodes) >= 4 else episodes[-1:])


def r2(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - SSE / SST over every output (pooled)."""
    sst = ((target - target.mean(axis=0)) ** 2).sum()
    return float(1.0 - ((predicted - target) ** 2).sum() / max(sst, 1e-12))


def probe_r2(features: np.ndarray, target: np.ndarray, episode: np.ndarray) -> dict[str, float]:
    """Held-out R² of a ridge regression from ``features`` to ``target``, the strength chosen on the last fifth of
    the training episodes."""
    test = held_out(episode)
    train_episodes = np.unique(episode[~test])
    tune_episodes = train_episodes[-max(1, len(train_episodes) // 5) :]
    tune = np.isin(episode, tune_episodes) & ~test
    fit = ~test & ~tune
    scores = {s: r2(ridge_predict(features[fit], target[fit], features[tune], s), target[tune]) for s in STRENGTHS}
    best = max(scores, key=scores.get)
    predicted = ridge_predict(features[~test], target[~test], features[test], best)
    return {"r2": r2(predicted, target[test]), "strength": best, "train_windows": int((~test).sum()),
            "test_windows": int(test.sum())}  # fmt: skip


def collect_features(args: argparse.Namespace, lam: LatentActionModel) -> dict[str, np.ndarray]:
    """Per robot window: the episode, the normalized action chunk, the state, the codes and each checkpoint's
    latent-action tokens (windows whose chunk or later frame runs past the episode end are left out)."""
    c = lam.config
    interface = PolicyConfig(cameras=(c.camera,), image_size=c.image_size, clip_length=2, frame_stride=c.horizon,
                             chunk_size=args.chunk_size, n_action_steps=args.chunk_size)  # fmt: skip
    windows = RobotWindows(args.robot, interface)
    episodes = windows.dataset.column("episode_index")
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(windows), size=min(args.max_windows, len(windows)), replace=False))
    policies = {name: load_policy(path) for name, path in args.checkpoint}
    for name, policy in policies.items():
        if policy.config.image_size != c.image_size or c.camera not in policy.config.cameras:
            raise SystemExit(f"--checkpoint {name}: its cameras/image size differ from the latent action model's")
    out: dict[str, list[np.ndarray]] = {"episode": [], "action": [], "state": [], "codes": []}
    out |= {f"tokens/{name}": [] for name in policies}
    for start in tqdm(range(0, len(rows), args.batch_size), desc="windows", disable=args.no_progress):
        items = [windows[int(i)] for i in rows[start : start + args.batch_size]]
        batch = collate_windows(items)
        keep = ~(batch[ACTION_IS_PAD].any(1) | batch[FUTURE_IS_PAD][:, 1])
        if not keep.any():
            continue
        batch = {k: v[keep] if isinstance(v, torch.Tensor) else [x for x, m in zip(v, keep, strict=True) if m]
                 for k, v in batch.items()}  # fmt: skip
        clip = batch[future_image_key(c.camera)]
        out["codes"].append(lam.codes(clip[:, 0], clip[:, 1]).numpy())
        out["episode"].append(episodes[rows[start : start + len(items)]][keep.numpy()])
        out["action"].append(batch[ACTION].flatten(1).numpy())
        out["state"].append(batch[OBS_STATE].numpy())
        for name, policy in policies.items():
            with torch.no_grad():
                tokens = policy.encode(batch).latent_action_tokens
            out[f"tokens/{name}"].append(tokens.flatten(1).float().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def action_probes(args: argparse.Namespace, lam: LatentActionModel) -> dict[str, Any]:
    data = collect_features(args, lam)
    one_hot = np.eye(lam.config.codebook_size, dtype=np.float32)[data["codes"]].reshape(len(data["codes"]), -1)
    features = {"lam_codes": one_hot, "state": data["state"]}
    features |= {k.split("/", 1)[1] + "_latent_tokens": v for k, v in data.items() if k.startswith("tokens/")}
    return {name: probe_r2(x, data["action"], data["episode"]) for name, x in features.items()}


# ---------------------------------------------------------------------------- (b) camera versus robot


def camera_probe(args: argparse.Namespace, lam: LatentActionModel) -> dict[str, Any]:
    from vlajepa.envs import MetaWorldEnv
    from vlajepa.envs.perturbations import Perturbation

    c = lam.config
    perturbation = Perturbation("camera", args.severity, seed=args.seed)
    changed: dict[str, list[np.ndarray]] = {"camera_reprojected": [], "camera_moves": [], "robot_moves": []}

    def frames(images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0

    for task in tqdm(parse_tasks(args.tasks), desc="tasks", disable=args.no_progress):
        env = MetaWorldEnv(task, image_size=c.image_size, camera=c.camera)
        try:
            for episode in range(args.episodes):
                seed = args.seed * 1000 + episode
                env.reset(seed=seed)
                moved = env.view.moved(perturbation.plan(seed).view)
                starts = [k * args.stride for k in range(args.probe_steps)]
                wanted = set(starts) | {t + c.horizon for t in starts}
                seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
                for step in range(max(wanted) + 1):
                    if step in wanted:  # the same state from the training camera and from the moved one
                        seen[step] = (env.render_view(env.view), env.render_view(moved))
                    if step < max(wanted):
                        env.step(env.expert_action(), render=False)
                o_t, o_t_moved = (frames([seen[t][v] for t in starts]) for v in (0, 1))
                o_h, o_h_moved = (frames([seen[t + c.horizon][v] for t in starts]) for v in (0, 1))
                pair = lam.codes(o_t, o_h)
                still = lam.codes(o_t, o_t)
                changed["camera_reprojected"].append((lam.codes(o_t_moved, o_h_moved) != pair).numpy())
                changed["camera_moves"].append((lam.codes(o_t, o_t_moved) != still).numpy())
                changed["robot_moves"].append((pair != still).numpy())
        finally:
            env.close()
    out: dict[str, Any] = {"severity": args.severity, "pairs": int(sum(len(x) for x in changed["robot_moves"]))}
    for name, parts in changed.items():
        flags = np.concatenate(parts) if parts else np.zeros((0, c.num_tokens), dtype=bool)
        out[name] = {"tokens_changed": float(flags.mean()) if flags.size else None,
                     "pairs_with_any_change": float(flags.any(1).mean()) if flags.size else None}  # fmt: skip
    return out


# ---------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    lines = ["# LAPA probes", "", f"Command: `{report['command']}`", "",
             "## (a) Held-out R² of a ridge probe to the true action chunk", "",
             "| features | R² | train / test windows |", "|---|---|---|"]  # fmt: skip
    for name, row in report["action_probe"].items():
        lines.append(f"| {name} | {row['r2']:.3f} | {row['train_windows']} / {row['test_windows']} |")
    cam = report["camera_probe"]
    title = f"## (b) Share of code tokens that change ({cam['pairs']} pairs, camera severity {cam['severity']})"
    lines += ["", title, "", "| change | tokens changed | pairs with any change |", "|---|---|---|"]
    for name in ("camera_reprojected", "camera_moves", "robot_moves"):
        row = cam[name]
        cells = ["n/a" if row[k] is None else f"{100 * row[k]:.1f} %" for k in ("tokens_changed",
                                                                                "pairs_with_any_change")]  # fmt: skip
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lam", required=True, help="latent action model folder (vlajepa train-lam --out)")
    parser.add_argument("--robot", required=True, help="LeRobot v3 robot dataset for the action probe")
    parser.add_argument("--checkpoint", action="append", default=[], type=named_checkpoint, metavar="NAME=PATH",
                        help="a policy whose latent-action tokens are probed too (repeatable)")  # fmt: skip
    parser.add_argument("--chunk-size", type=int, default=8, help="actions per probed chunk")
    parser.add_argument("--max-windows", type=int, default=4000, help="robot windows sampled for the action probe")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tasks", default="mt10", help="camera probe: tasks (mt10 or a comma-separated list)")
    parser.add_argument("--episodes", type=int, default=3, help="camera probe: expert episodes per task")
    parser.add_argument("--probe-steps", type=int, default=6, help="camera probe: pairs per episode")
    parser.add_argument("--stride", type=int, default=10, help="camera probe: steps between probed o_t")
    parser.add_argument("--severity", type=int, default=2, choices=(1, 2, 3), help="camera perturbation severity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="results prefix (<out>.json, <out>.md)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lam = LatentActionModel.load(args.lam)
    report = {
        "command": "python benchmarks/probe_lapa.py " + shlex.join(sys.argv[1:]),
        "lam": str(Path(args.lam)),
        "lam_config": lam.config.to_dict(),
        "checkpoints": dict(args.checkpoint),
        "action_probe": action_probes(args, lam),
        "camera_probe": camera_probe(args, lam),
    }
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
