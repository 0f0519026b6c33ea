"""``vlajepa eval``: evaluate a policy on MetaWorld tasks, in distribution and under perturbations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlajepa.commands.arguments import (
    add_planner_arguments,
    checked_by,
    existing_path,
    planner_options,
    policy_argument,
)
from vlajepa.constants import camera_setting
from vlajepa.envs import PERTURBATIONS
from vlajepa.eval.policies import PolicySource

EPILOG = """\
policies:
  expert                 MetaWorld's scripted expert (privileged upper bound)
  random                 uniform random actions (floor)
  checkpoint:PATH        a trained policy saved with save_pretrained
  --planner DIR          a world-model planner (vlajepa train-planner) around its base policy; the same as
                         --policy checkpoint:DIR, with --candidates and --cem-iterations
  remote:ws://HOST:PORT  a policy served by `vlajepa serve` (wss:// with TLS; API key: --api-key-file or
                         $VLAJEPA_API_KEY)

examples:
  vlajepa eval --policy expert --tasks mt10 --episodes 20 --out benchmarks/results/expert_mt10
  vlajepa eval --policy checkpoint:outputs/run/checkpoints/last --settings id,all --perturbed-episodes 10
  vlajepa eval --planner outputs/run_planner --candidates 16 --name bc+plan
"""


def parse_policy(
    text: str,
    name: str | None = None,
    euler_steps: int | None = None,
    noise_scale: float | None = None,
    api_key_file: str | None = None,
    ca_file: str | None = None,
) -> PolicySource:
    """Parse ``kind[:argument]`` into a :class:`PolicySource`; ``euler_steps`` and ``noise_scale`` apply to
    checkpoints only, ``api_key_file`` and ``ca_file`` to remote policies only (the source records the key
    file's path, never the key)."""
    kind, _, arg = text.partition(":")
    for flag, value in (("--euler-steps", euler_steps), ("--noise-scale", noise_scale)):
        if value is not None and kind != "checkpoint":
            raise ValueError(f"{flag} applies to checkpoint policies, not {kind!r}")
    for flag, value in (("--api-key-file", api_key_file), ("--ca-file", ca_file)):
        if value is not None and kind != "remote":
            raise ValueError(f"{flag} applies to remote policies, not {kind!r}")
    if euler_steps is not None and euler_steps < 1:
        raise ValueError(f"--euler-steps must be at least 1, got {euler_steps}")
    if noise_scale is not None and not 0.0 <= noise_scale <= 1.0:
        raise ValueError(f"--noise-scale must be in [0, 1], got {noise_scale}")
    if kind == "checkpoint":
        if not arg:
            raise ValueError("checkpoint policy needs a path: checkpoint:PATH")
        kwargs = {"path": arg, "num_inference_steps": euler_steps}
        if noise_scale is not None:
            kwargs["noise_scale"] = noise_scale
        return PolicySource("checkpoint", kwargs, name)
    if kind == "remote":
        if not arg:
            raise ValueError("remote policy needs a URL: remote:ws://127.0.0.1:8000")
        kwargs = {"url": arg}
        kwargs.update({k: v for k, v in (("api_key_file", api_key_file), ("ca_file", ca_file)) if v is not None})
        return PolicySource("remote", kwargs, name)
    if kind == "random":
        return PolicySource("random", {"seed": int(arg or 0)}, name)
    if kind == "expert" and not arg:
        return PolicySource("expert", {}, name)
    raise ValueError(f"unknown policy {text!r}; see `vlajepa eval --help`")


def named_checkpoint(text: str) -> tuple[str, str]:
    """``NAME=PATH`` -> ``(name, path)`` for benchmark scripts' repeatable ``--checkpoint`` (an argparse ``type``):
    the name labels the checkpoint's rows, the path must be an existing checkpoint directory."""
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH with an existing checkpoint directory")
    return name, path


def parse_tasks(text: str) -> tuple[str, ...]:
    from vlajepa.envs import ALL_TASKS, MT10, resolve_task

    if text.lower() == "mt10":
        return tuple(MT10)
    if text.lower() == "mt50":
        return tuple(ALL_TASKS)
    return tuple(resolve_task(t.strip()) for t in text.split(",") if t.strip())


def parse_settings(text: str) -> tuple[str, ...]:
    from vlajepa.envs import PERTURBATIONS

    settings: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "all":
            settings.extend(PERTURBATIONS)
        elif item == "id" or item in PERTURBATIONS:
            settings.append(item)
        else:
            raise ValueError(
                f"unknown setting {item!r}; expected 'id', 'all' or one of {', '.join(PERTURBATIONS)}"
            )
    return tuple(dict.fromkeys(settings))


def parse_cameras(text: str) -> str | tuple[str, ...]:
    """``--camera``: one camera name, or comma-separated names (every one rendered, each its own image key)."""
    from vlajepa.envs.scene import CAMERAS

    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise ValueError("--camera needs at least one camera name")
    for name in names:
        if name not in CAMERAS:
            raise ValueError(f"unknown camera {name!r}; expected one of {', '.join(CAMERAS)}")
    return camera_setting(names)


def rendering_for(
    policy: PolicySource, camera: str | tuple[str, ...] | None, image_size: int | None
) -> tuple[str | tuple[str, ...] | None, int]:
    """The cameras and resolution to render for ``policy``: a checkpoint's training cameras (every one; a trained
    policy reads exactly those) and resolution, a served policy's cameras (from the server's metadata), else the
    environment's default camera; at 96 px unless given. A ``camera`` given for a checkpoint or a served policy
    must be the cameras it reads (a different set could only fail at the first observation)."""
    wanted: tuple[str, ...] | None = None
    if policy.kind == "checkpoint":
        from vlajepa.policies import load_policy_config

        trained = load_policy_config(policy.kwargs["path"])
        wanted = tuple(trained.cameras)
        image_size = trained.image_size if image_size is None else image_size
    elif policy.kind == "remote":
        from vlajepa.serve import RemotePolicy

        with RemotePolicy(
            policy.kwargs["url"], api_key_file=policy.kwargs.get("api_key_file"), ca_file=policy.kwargs.get("ca_file")
        ) as remote:
            spec = remote.spec
        wanted = tuple(image.camera for image in spec.images)
        fixed = [image.height for image in spec.images if not image.any_size]
        image_size = (fixed[0] if fixed else None) if image_size is None else image_size
    if wanted is not None:
        given = (camera,) if isinstance(camera, str) else camera
        if given is not None and set(given) != set(wanted):
            raise ValueError(
                f"--camera {','.join(given)}: the {policy.kind} policy reads the cameras {','.join(wanted)}; "
                "render those (leave --camera out)"
            )
        camera = camera_setting(wanted if given is None else given)
    return camera, 96 if image_size is None else image_size


def default_video_dir(out: str | Path) -> Path:
    """Videos of a run whose results prefix is ``out``: ``videos/<name>`` in the folder of the results, so every
    output of one evaluation lands under the folder the user chose."""
    out = Path(out)
    return out.parent / "videos" / out.name


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a policy on MetaWorld (success rates with 95%% intervals, videos, JSON/markdown/plot)",
        description="Roll a policy out on MetaWorld tasks in worker processes and report success per task and per "
        "perturbation with 95% Wilson intervals. Writes <out>.json (shared results schema), <out>.md and <out>.png.",
        epilog=EPILOG,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--policy", type=policy_argument, help="expert | random[:SEED] | checkpoint:PATH | remote:URL"
    )
    add_planner_arguments(source, parser)
    parser.add_argument(
        "--name", default=None, help="method name in the result rows (default: the policy kind)"
    )
    parser.add_argument(
        "--tasks",
        default="mt10",
        type=checked_by(parse_tasks),
        help="mt10, mt50 or a comma-separated list of task names (default: mt10)",
    )
    parser.add_argument(
        "--settings",
        default="id",
        type=checked_by(parse_settings),
        help="comma-separated: id (in distribution), all (every perturbation) or perturbation names: "
        f"{', '.join(PERTURBATIONS)} (default: id)",
    )
    parser.add_argument(
        "--episodes", type=int, default=20, help="episodes per task in distribution (default 20)"
    )
    parser.add_argument(
        "--perturbed-episodes", type=int, default=None, help="episodes per task per perturbation (default: --episodes)"
    )
    parser.add_argument("--severity", type=int, default=2, choices=(1, 2, 3), help="perturbation severity (default: 2)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="camera resolution in pixels (default: a checkpoint's training resolution, else 96)",
    )
    parser.add_argument(
        "--camera",
        "--cameras",
        type=checked_by(parse_cameras),
        default=None,
        help="camera name, or comma-separated names for a several-camera policy (default: the cameras a checkpoint "
        "or a served policy reads, else the environment's default); videos show the first camera",
    )
    parser.add_argument(
        "--n-action-steps",
        type=int,
        default=None,
        help="actions executed per predicted chunk before predicting again (default: the whole chunk)",
    )
    parser.add_argument(
        "--euler-steps",
        type=int,
        default=None,
        help="checkpoint policies: flow-matching Euler steps per chunk (default: the checkpoint's "
        "action_head.num_inference_steps)",
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=None,
        help="checkpoint policies: flow-matching sampling temperature in [0, 1] (default 1, the trained noise; "
        "0 gives deterministic chunks)",
    )
    parser.add_argument(
        "--api-key-file",
        type=existing_path("API key file", folder=False),
        default=None,
        help="remote policies: file whose first key is sent to the server (default: $VLAJEPA_API_KEY, if set)",
    )
    parser.add_argument(
        "--ca-file",
        type=existing_path("certificate authority file", folder=False),
        default=None,
        help="remote wss:// policies: PEM certificate(s) to verify the server with (default: the system's)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="override the per-task step limit (default: the task's)"
    )
    parser.add_argument("--workers", type=int, default=2, help="simulator worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=1_000_000, help="base evaluation seed (default: 1000000)")
    parser.add_argument(
        "--videos", type=int, default=1, help="rollout videos saved per (task, setting); 0: none (default: 1)"
    )
    parser.add_argument(
        "--out",
        default="outputs/eval/results",
        help="output prefix: writes <out>.json, <out>.md and <out>.png (default: outputs/eval/results)",
    )
    parser.add_argument(
        "--video-dir",
        default=None,
        help="where videos go (default: videos/<name of --out> beside --out, e.g. outputs/eval/videos/results)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlajepa.eval.report import build_report, markdown_table, rows_from_episodes, write_report
    from vlajepa.eval.runner import EvalConfig, evaluate

    policy = parse_policy(
        args.policy or f"checkpoint:{args.planner}",
        args.name,
        args.euler_steps,
        args.noise_scale,
        args.api_key_file,
        args.ca_file,
    )
    options = planner_options(args)
    if args.planner is not None:
        policy = PolicySource("checkpoint", {**policy.kwargs, **options}, args.name or "planner")
    camera, image_size = rendering_for(policy, parse_cameras(args.camera) if args.camera else None, args.image_size)
    config = EvalConfig(
        tasks=parse_tasks(args.tasks),
        settings=parse_settings(args.settings),
        episodes=args.episodes,
        perturbed_episodes=args.perturbed_episodes,
        severity=args.severity,
        image_size=image_size,
        camera=camera,
        n_action_steps=args.n_action_steps,
        max_steps=args.max_steps,
        workers=args.workers,
        seed=args.seed,
        videos=args.videos,
    )
    video_dir = Path(args.video_dir or default_video_dir(args.out)) if args.videos > 0 else None
    episodes, wall = evaluate(policy, config, video_dir=video_dir, progress=not args.no_progress)
    rows = rows_from_episodes(policy.method, episodes, severity=config.severity)
    report = build_report(
        rows,
        wall,
        config=config,
        policy={"kind": policy.kind, **policy.kwargs},
        episodes_per_minute=round(60 * len(episodes) / wall, 2) if wall > 0 else None,
        videos=sorted({e.video for e in episodes if e.video}),
    )
    paths = write_report(report, args.out, title=f"{policy.method} on {args.tasks}")
    print(markdown_table(report, title=f"{policy.method} on {args.tasks}"))
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0
