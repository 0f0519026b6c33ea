"""``vlajepa collect``: scripted-expert robot demonstrations (LeRobot v3) or an action-free video set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlajepa.data.video_io import VIDEO_QUALITIES

EPILOG = """\
examples:
  vlajepa collect robot --tasks mt10 --episodes-per-task 10 --out data/mt10_robot
  vlajepa collect video --tasks mt10 --episodes-per-task 50 --out data/mt10_video
  vlajepa collect robot --tasks mt10 --action-noise 0.3 --out data/mt10_robot_dart   # noise-injected (DART)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect scripted-expert demonstrations (LeRobot v3) or action-free domain-shifted videos",
        description="Run MetaWorld's scripted experts in worker processes. `robot` writes a LeRobot v3 dataset "
        "(successful episodes only); `video` writes mp4 files + captions.csv filmed with a domain shift (arm hidden "
        "or recoloured, moving camera, random background and lighting) and no actions. Deterministic for a seed; "
        "the output folder appears only when the run completes.",
        epilog=EPILOG,
    )
    parser.add_argument("kind", choices=("robot", "video"), help="what to collect")
    parser.add_argument(
        "--tasks", default="mt10", help="mt10, mt50 or a comma-separated list of task names (default: mt10)"
    )
    parser.add_argument(
        "--episodes-per-task", type=int, default=10, help="successful episodes kept per task (default: 10)"
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist yet)")
    parser.add_argument("--image-size", type=int, default=96, help="camera resolution in pixels (default: 96)")
    parser.add_argument("--camera", default=None, help="camera name (default: the environment's default)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the episodes (default: 0)")
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


def run(args: argparse.Namespace) -> int:
    import shutil

    from vlajepa.collect import CollectConfig, collect_robot_dataset, collect_video_set
    from vlajepa.commands.evaluate import parse_tasks

    out = Path(args.out)
    if args.kind == "video" and args.action_noise:
        raise SystemExit("--action-noise applies to robot demonstrations only (videos carry none)")
    if args.kind == "video" and args.environment_state:
        raise SystemExit("--environment-state applies to robot demonstrations only")
    if args.kind == "robot" and (args.still_camera or args.arm != "hidden"):
        raise SystemExit("--still-camera and --arm apply to domain-shifted video only")
    if out.exists():
        if not args.overwrite:
            raise SystemExit(f"{out} already exists; pass --overwrite to replace it")
    config = CollectConfig(
        tasks=parse_tasks(args.tasks),
        episodes_per_task=args.episodes_per_task,
        image_size=args.image_size,
        camera=args.camera,
        seed=args.seed,
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
