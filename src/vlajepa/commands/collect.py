"""``vlajepa collect``: scripted-expert robot demonstrations (LeRobot v3), an action-free video set, or a policy's
own rollouts (LeRobot v3, every episode)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlajepa.commands.arguments import checked_by, policy_argument
from vlajepa.data.video_io import VIDEO_QUALITIES

EPILOG = """\
examples:
  vlajepa collect robot --tasks mt10 --episodes-per-task 10 --out data/mt10_robot
  vlajepa collect video --tasks mt10 --episodes-per-task 50 --out data/mt10_video
  vlajepa collect robot --tasks mt10 --action-noise 0.3 --out data/mt10_robot_dart   # noise-injected (DART)
  vlajepa collect robot --tasks mt10 --camera workspace_oblique,corner --out data/mt10_robot_2cam   # two cameras
  vlajepa collect rollouts --policy checkpoint:outputs/run/checkpoints/last --tasks mt10 --episodes-per-task 20 \\
      --out data/mt10_rollouts   # the policy's own episodes, successes and failures
"""

# options of one kind only: (attribute, flag, the kind it applies to, its default)
_KIND_OPTIONS = (
    ("action_noise", "--action-noise", "robot", 0.0),
    ("environment_state", "--environment-state", "robot", False),
    ("still_camera", "--still-camera", "video", False),
    ("arm", "--arm", "video", "hidden"),
    ("policy", "--policy", "rollouts", None),
    ("settings", "--settings", "rollouts", None),
    ("severity", "--severity", "rollouts", None),
    ("noise_scale", "--noise-scale", "rollouts", None),
    ("euler_steps", "--euler-steps", "rollouts", None),
    ("n_action_steps", "--n-action-steps", "rollouts", None),
    ("max_steps", "--max-steps", "rollouts", None),
)
_KIND_DATA = {"robot": "robot demonstrations", "video": "domain-shifted video", "rollouts": "policy rollouts"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect scripted-expert demonstrations (LeRobot v3) or action-free domain-shifted videos",
        description="Run MetaWorld's scripted experts in worker processes. `robot` writes a LeRobot v3 dataset "
        "(successful episodes only); `video` writes mp4 files + captions.csv filmed with a domain shift (arm hidden "
        "or recoloured, moving camera, random background and lighting) and no actions. `rollouts` runs a policy "
        "(--policy) through the evaluation harness and writes every episode, successes and failures, as a LeRobot "
        "v3 dataset like `robot` (executed actions, next.reward, next.success, next.done, progress; the episode's "
        "success in the episode table). Deterministic for a seed; the output folder appears only when the run "
        "completes.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "kind",
        choices=("robot", "video", "rollouts"),
        help="robot: expert demonstrations; video: action-free domain-shifted videos; rollouts: a policy's episodes",
    )
    parser.add_argument(
        "--tasks", default="mt10", help="mt10, mt50 or a comma-separated list of task names (default: mt10)"
    )
    parser.add_argument(
        "--episodes-per-task",
        type=int,
        default=10,
        help="robot, video: successful episodes kept per task; rollouts: episodes per task and setting (default: 10)",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist yet)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="camera resolution in pixels (default: 96; rollouts of a checkpoint: its training resolution)",
    )
    parser.add_argument(
        "--camera",
        "--cameras",
        type=checked_by(_parse_cameras),
        default=None,
        help="camera name, or comma-separated names: robot and rollouts record every camera as its own video "
        "feature (observation.images.<camera>), video films the first (default: the environment's default; "
        "rollouts: the cameras the policy reads)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="base seed of the episodes (default: 0; rollouts: 2000000, apart from the evaluation's and the "
        "expert collection's seeds)",
    )
    parser.add_argument("--workers", type=int, default=2, help="simulator worker processes (default: 2)")
    parser.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="robot only: DART-style noise injection; execute the expert's action plus Gaussian noise of this "
        "std (actions are in [-1, 1]) and record the expert's clean action (default 0: the expert's own rollouts)",
    )
    parser.add_argument(
        "--environment-state",
        action="store_true",
        help="robot only: also record observation.environment_state, the object and goal xyz from the simulator, "
        "as data for analyses (benchmarks/probe_features.py); no policy reads it",
    )
    parser.add_argument(
        "--still-camera",
        action="store_true",
        help="video only: keep each episode's randomly moved camera still (no drift, no shake), so the change "
        "between frames is the scene's own motion, which a world model can learn, not random camera motion",
    )
    parser.add_argument(
        "--arm",
        choices=("hidden", "recolored", "visible"),
        default="hidden",
        help="video only: how the arm looks; hidden (only the gripper is drawn, like a hand: the default), "
        "recolored (a random colour per episode) or visible",
    )
    rollouts = parser.add_argument_group("rollouts")
    rollouts.add_argument(
        "--policy",
        type=policy_argument,
        default=None,
        help="the policy to roll out: checkpoint:PATH | remote:URL | expert | random[:SEED] (see `vlajepa eval`)",
    )
    rollouts.add_argument(
        "--settings",
        type=checked_by(_parse_settings),
        default=None,
        help="comma-separated: id (in distribution), all, or perturbation names (default: id)",
    )
    rollouts.add_argument("--severity", type=int, choices=(1, 2, 3), default=None, help="perturbation severity (2)")
    rollouts.add_argument(
        "--noise-scale",
        type=float,
        default=None,
        help="checkpoint policies: flow-matching sampling temperature in [0, 1] (default 1; 0: deterministic)",
    )
    rollouts.add_argument(
        "--euler-steps", type=int, default=None, help="checkpoint policies: flow-matching Euler steps per chunk"
    )
    rollouts.add_argument(
        "--n-action-steps", type=int, default=None, help="actions executed per chunk (default: the whole chunk)"
    )
    rollouts.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--video-quality",
        choices=sorted(VIDEO_QUALITIES),
        default="lossless",
        help="how frames are stored: lossless (H.264 QP 0, full-resolution colour; decoded frames match the "
        "renders the policy sees at evaluation) or lerobot (LeRobot's AV1 CRF 30 default, about 4x smaller, "
        "but at 96 px it blurs 1-3 px objects such as goal markers). Default: lossless",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _parse_cameras(text: str) -> str | tuple[str, ...]:
    from vlajepa.commands.evaluate import parse_cameras

    return parse_cameras(text)


def _parse_settings(text: str) -> tuple[str, ...]:
    from vlajepa.commands.evaluate import parse_settings

    return parse_settings(text)


def _check_kind_options(args: argparse.Namespace) -> None:
    for attribute, flag, kind, default in _KIND_OPTIONS:
        if args.kind != kind and getattr(args, attribute) != default:
            raise SystemExit(f"{flag} applies to {_KIND_DATA[kind]} only (collect {kind}), not collect {args.kind}")
    if args.kind == "rollouts" and args.policy is None:
        raise SystemExit("collect rollouts needs --policy (e.g. checkpoint:PATH)")


def run(args: argparse.Namespace) -> int:
    import shutil

    _check_kind_options(args)
    out = Path(args.out)
    if out.exists():
        if not args.overwrite:
            raise SystemExit(f"{out} already exists; pass --overwrite to replace it")
    if args.kind == "rollouts":
        config, policy = _rollout_config(args)
        if out.exists():
            shutil.rmtree(out)
        from vlajepa.eval.rollouts import collect_rollouts

        summary = collect_rollouts(policy, config, out, args.video_quality, progress=not args.no_progress)
        print(json.dumps({"out": str(out), "kind": args.kind, **summary.as_dict()}, indent=2))
        return 0

    from vlajepa.collect import CollectConfig, collect_robot_dataset, collect_video_set
    from vlajepa.commands.evaluate import parse_tasks

    config = CollectConfig(
        tasks=parse_tasks(args.tasks),
        episodes_per_task=args.episodes_per_task,
        image_size=96 if args.image_size is None else args.image_size,
        camera=_parse_cameras(args.camera) if args.camera else None,
        seed=0 if args.seed is None else args.seed,
        workers=args.workers,
        domain_shift=args.kind == "video",
        action_noise=args.action_noise,
        environment_state=args.environment_state,
        video_quality=args.video_quality,
        still_camera=args.still_camera,
        arm=args.arm,
    )
    if out.exists():
        shutil.rmtree(out)
    collect = collect_robot_dataset if args.kind == "robot" else collect_video_set
    summary = collect(config, out, progress=not args.no_progress)
    result = {
        "out": str(out),
        "kind": args.kind,
        "episodes": summary.episodes,
        "dropped_failed_episodes": sum(summary.dropped.values()),
        "dropped_per_task": {t: n for t, n in summary.dropped.items() if n},
        "wall_time_s": round(summary.wall_time_s, 2),
        "episodes_per_minute": round(summary.episodes_per_minute, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


def _rollout_config(args: argparse.Namespace):
    """The evaluation config and policy source of ``collect rollouts``."""
    from vlajepa.commands.evaluate import parse_cameras, parse_policy, parse_settings, parse_tasks, rendering_for
    from vlajepa.eval.rollouts import ROLLOUT_SEED
    from vlajepa.eval.runner import EvalConfig

    if args.episodes_per_task < 1:
        raise SystemExit(f"--episodes-per-task must be at least 1, got {args.episodes_per_task}")
    policy = parse_policy(args.policy, None, args.euler_steps, args.noise_scale)
    camera, image_size = rendering_for(policy, parse_cameras(args.camera) if args.camera else None, args.image_size)
    config = EvalConfig(
        tasks=parse_tasks(args.tasks),
        settings=parse_settings(args.settings or "id"),
        episodes=args.episodes_per_task,
        severity=2 if args.severity is None else args.severity,
        image_size=image_size,
        camera=camera,
        n_action_steps=args.n_action_steps,
        max_steps=args.max_steps,
        workers=args.workers,
        seed=ROLLOUT_SEED if args.seed is None else args.seed,
        videos=0,
    )
    return config, policy
