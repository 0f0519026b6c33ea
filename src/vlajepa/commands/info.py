"""``vlajepa info``: versions, rendering back-end, and a summary of a dataset or video set."""

from __future__ import annotations

import argparse
import json
import os
import platform

from vlajepa.commands.arguments import existing_path
from vlajepa.presets import preset_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print versions and environment facts, or summarize a dataset",
        description="Without arguments: library versions, CPU threads and the MuJoCo rendering back-end. With "
        "--dataset: the LeRobot v3 dataset's features, episodes and tasks. With --videos: the video set's size. "
        "With --config: the model's parameter counts per part, computed without weights (on the meta device).",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        type=existing_path("dataset folder", folder=True),
        help="path of a LeRobot v3 dataset",
    )
    parser.add_argument(
        "--videos",
        default=None,
        type=existing_path("video set folder", folder=True),
        help="path of an action-free video set",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="PRESET",
        help=f"a preset name ({', '.join(preset_names())}) or YAML file: print its model's parameter counts per part",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="with --config: override a model field, e.g. model.student.hf_vlm.model_dir=~/models/qwen (repeatable)",
    )
    parser.set_defaults(func=run)


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - report any import failure as "not available"
        return None


def run(args: argparse.Namespace) -> int:
    import vlajepa

    if args.config:
        info = _parameter_info(args.config, args.overrides)
    elif args.dataset:
        from vlajepa.data.lerobot import LeRobotDatasetMetadata

        meta = LeRobotDatasetMetadata(args.dataset)
        info = {
            "root": str(args.dataset),
            "fps": meta.fps,
            "total_episodes": meta.total_episodes,
            "total_frames": meta.total_frames,
            "features": {k: v.get("shape") for k, v in meta.features.items()},
            "tasks": list(meta.tasks),
        }
    elif args.videos:
        from vlajepa.data.videos import VideoSet

        videos = VideoSet(args.videos)
        info = {
            "root": str(args.videos),
            "videos": len(videos),
            "captions": sorted(set(videos.captions))[:20],
        }
    else:
        info = {
            "vlajepa": vlajepa.__version__,
            "python": platform.python_version(),
            "torch": _version("torch"),
            "numpy": _version("numpy"),
            "mujoco": _version("mujoco"),
            "metaworld": _version("metaworld"),
            "av": _version("av"),
            "cpus": os.cpu_count(),
            "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        }
    print(json.dumps(info, indent=2, default=str))
    return 0


def _parameter_info(preset: str, overrides: list[str]) -> dict:
    """Parameter counts per part of a preset's model (millions too), built on the meta device."""
    from vlajepa.commands.train import apply_overrides
    from vlajepa.config import PolicyConfig
    from vlajepa.policies.sizes import parameter_counts
    from vlajepa.presets import preset_path

    path = preset_path(preset)
    config = PolicyConfig.from_yaml(path)
    model = config.to_dict()
    apply_overrides({"model": model}, overrides)
    counts = parameter_counts(type(config).from_dict(model))
    return {
        "config": str(path),
        "parameters": counts,
        "millions": {part: round(n / 1e6, 3) for part, n in counts.items()},
    }
