"""``vlajepa train``: behaviour cloning, robot + video co-training, or fine-tuning from a pretrained checkpoint.

The options shared with ``vlajepa pretrain`` live here too (:func:`add_training_arguments`, :func:`run_training`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from vlajepa.commands.arguments import config_preset, existing_path
from vlajepa.presets import preset_names

METHODS = ("vla-jepa", "bc", "lapa-latent", "lapa")

EPILOG = """\
recipes:
  co-training (robot + action-free video, from scratch); the default preset's frozen ImageNet encoder is both
  the student's vision and the world model's target, its features computed once per dataset:
    vlajepa train --robot data/mt10_robot --video data/mt10_video --out outputs/cotrain
  the same with the vit preset (a ViT from scratch), whose frozen target `vlajepa pretrain-encoder` learns from
  the video first (or pass --target ema instead):
    vlajepa pretrain-encoder --video data/mt10_video --out outputs/encoder
    vlajepa train --config vit --robot data/mt10_robot --video data/mt10_video \\
        --target-checkpoint outputs/encoder/encoder.safetensors --out outputs/cotrain_vit
  behaviour cloning (no world model, robot data only):
    vlajepa train --method bc --robot data/mt10_robot --out outputs/bc
  fine-tuning a pretrained world model (see `vlajepa pretrain`; a frozen target's weights file is a reference,
  so a --config vit run gives its --target-checkpoint again):
    vlajepa train --init-from outputs/pretrain/checkpoints/last --robot data/mt10_robot --out outputs/finetune
  world-model action selection trained in the same run (a planner in every checkpoint's planner/ folder):
    vlajepa train --method bc --robot data/mt10_robot --out outputs/bc --planner
    vlajepa eval --planner outputs/bc/checkpoints/last/planner
  resume an interrupted run exactly (configs come from its last checkpoint; --steps may extend it, and
  --workers, --log-every, --checkpoint-every may change; other options are ignored):
    vlajepa train --out outputs/cotrain --resume
  several processes (DDP through accelerate; on a machine without CUDA they are CPU processes over gloo, and
  `--multi_gpu` is still the flag that starts them: `--cpu` alone starts one process unless MPI is set up):
    accelerate launch --multi_gpu --num_processes 2 -m vlajepa.cli train --robot ... --out ...

files in --out: checkpoints/<step>/ and checkpoints/last (config.json, model.safetensors, normalization.json,
optimizer.pt, scheduler.pt, rng_state_<rank>.pt, training_state.json, train_config.json; load one with
VLAJEPAPolicy.from_pretrained), metrics.jsonl, tensorboard/, latent_cache/ (frozen target only).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a policy: co-training on robot + video, behaviour cloning, or fine-tuning a pretrained model",
        description="Train VLA-JEPA on a LeRobot v3 robot dataset, optionally mixed with an action-free video set "
        "(robot batches: L_action + beta * L_wm; video batches: L_wm). --method bc trains the student and action "
        "head alone. --init-from starts from a checkpoint of `vlajepa pretrain`. Checkpoints resume exactly.",
        epilog=EPILOG,
    )
    add_training_arguments(parser)
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        type=existing_path("checkpoint folder", folder=True),
        help="initialize from this checkpoint's weights (fine-tuning)",
    )
    parser.add_argument(
        "--planner",
        action="store_true",
        help="also train a planner's world model and score in the same steps, on the robot data (world-model "
        "action selection; its fields with --set planner.FIELD=VALUE); every checkpoint then holds it in planner/, "
        "for `vlajepa eval --planner CKPT/planner`",
    )
    parser.set_defaults(func=lambda args: run_training(args, pretrain=False))


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Options common to ``train`` and ``pretrain``."""
    data = parser.add_argument_group("data and output")
    data.add_argument(
        "--robot",
        default=None,
        type=existing_path("dataset folder", folder=True),
        help="LeRobot v3 dataset with actions",
    )
    data.add_argument(
        "--video",
        default=None,
        type=existing_path("video set folder", folder=True),
        help="action-free video set (mp4 + captions.csv)",
    )
    data.add_argument("--out", required=True, help="run folder (checkpoints, metrics, caches)")
    data.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last")
    data.add_argument("--overwrite", action="store_true", help="start over in an --out that has checkpoints")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--config",
        default="default",
        type=config_preset,
        help="YAML preset with a model: and an optional train: section: a packaged preset's name ("
        f"{', '.join(preset_names())}) or a YAML file's path (default: default)",
    )
    model.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="vla-jepa: with the world model; bc: without; lapa-latent: LAPA's latent pretraining (predict the codes "
        "of the latent action model given with --lam); lapa: LAPA's action fine-tuning (from --init-from a "
        "lapa-latent checkpoint). The student and action head are the --config preset's for every method",
    )
    model.add_argument(
        "--lam",
        default=None,
        metavar="DIR",
        type=existing_path("latent action model folder", folder=True),
        help="--method lapa-latent: the latent action model (`vlajepa train-lam --out`), frozen, referenced by path",
    )
    model.add_argument(
        "--target",
        choices=("ema", "frozen", "random"),
        default=None,
        help="target encoder: frozen (a pretrained backbone's packaged weights, or for a ViT a self-supervised "
        "encoder from `vlajepa pretrain-encoder` given with --target-checkpoint), ema (moving average of the "
        "student's vision encoder) or random (frozen without a weights file: a pretrained backbone's packaged "
        "weights, a ViT's random features)",
    )
    model.add_argument(
        "--target-checkpoint",
        default=None,
        type=existing_path("encoder weights file", folder=False),
        help="frozen target encoder weights (safetensors); implies --target frozen",
    )
    model.add_argument(
        "--init-vision",
        default=None,
        metavar="ENCODER",
        type=existing_path("encoder weights file", folder=False),
        help="initialize the student's vision encoder from these weights (`vlajepa pretrain-encoder`'s "
        "encoder.safetensors) instead of at random; works with --method bc too",
    )
    run = parser.add_argument_group("training")
    run.add_argument("--steps", type=int, default=None, help="optimizer steps")
    run.add_argument("--batch-size", type=int, default=None, help="windows per batch per process")
    run.add_argument("--lr", type=float, default=None, help="peak learning rate")
    run.add_argument("--mix", default=None, metavar="R:V", help="robot:video batch ratio, e.g. 1:1 or 3:1")
    run.add_argument("--batches-per-step", type=int, default=None, help="batches averaged per optimizer step")
    run.add_argument(
        "--seed", type=int, default=None, help="seed of model initialization, data order and flow-matching noise"
    )
    run.add_argument("--checkpoint-every", type=int, default=None, help="optimizer steps between checkpoints")
    run.add_argument("--log-every", type=int, default=None, help="optimizer steps between metric lines")
    run.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per process")
    run.add_argument("--bf16", action="store_true", help="bf16 autocast (mixed precision)")
    run.add_argument(
        "--latent-cache", choices=("off", "memory", "disk"), default=None, help="frozen target: cache its latents"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set model.wm_weight=0.5 --set train.warmup_steps=20 (repeatable)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar (metrics.jsonl is written anyway)")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per process (default: torch's); on a machine busy with other work 1 can be "
        "several times faster than 2, which then contend for the cores",
    )


def apply_overrides(sections: dict[str, dict[str, Any]], items: list[str]) -> None:
    """Apply ``--set SECTION.FIELD=VALUE`` items (values parsed as YAML) to the config dicts of ``sections``, in
    place; an item naming another section or an unknown field is refused with a message naming it."""
    import yaml

    expected = " or ".join(f"{name}.FIELD=VALUE" for name in sections)
    for item in items:
        key, sep, raw = item.partition("=")
        section, _, field = key.partition(".")
        if not sep or section not in sections or not field:
            raise SystemExit(f"--set {item!r}: expected {expected}")
        _set_dotted(sections[section], field, yaml.safe_load(raw), name=key)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any, *, name: str) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            raise SystemExit(f"--set {name}: {key!r} is not a config section")
        node = node[key]
    if keys[-1] not in node:
        raise SystemExit(f"--set {name}: unknown field {keys[-1]!r}; known: {', '.join(node)}")
    node[keys[-1]] = value


def build_configs(args: argparse.Namespace, *, pretrain: bool):
    """Model and training configs from the preset, the named options and ``--set`` overrides."""
    from vlajepa.config import PolicyConfig
    from vlajepa.presets import preset_path
    from vlajepa.train.config import TrainConfig

    path = preset_path(args.config)
    preset = PolicyConfig.from_yaml(path)
    model = preset.to_dict()
    train = TrainConfig.from_yaml(path).to_dict()
    model_class = type(preset)
    if args.lam is not None and args.method != "lapa-latent":
        raise SystemExit("--lam is the latent action model of --method lapa-latent")
    if args.method in ("lapa-latent", "lapa"):
        model, model_class = _lapa_model(args, preset)
    elif args.method is not None:
        model["use_world_model"] = args.method == "vla-jepa"
    if "target" in model:
        _apply_target_options(model, args)
    elif args.target is not None or args.target_checkpoint is not None:
        raise SystemExit(f"--target and --target-checkpoint choose a world model's target; a {model_class.type} "
                         "policy has none")  # fmt: skip
    named = {
        "robot": args.robot and str(Path(args.robot).resolve()),
        "video": args.video and str(Path(args.video).resolve()),
        "init_from": getattr(args, "init_from", None) and str(Path(args.init_from).resolve()),
        "init_vision": args.init_vision and str(Path(args.init_vision).resolve()),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "batches_per_step": args.batches_per_step,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every,
        "num_workers": args.workers,
        "latent_cache": args.latent_cache,
        "precision": "bf16" if args.bf16 else None,
    }
    train |= {key: value for key, value in named.items() if value is not None}
    if pretrain:
        train["robot_actions"] = bool(args.robot_actions)
    if args.mix is not None:
        try:
            robot_weight, video_weight = (float(x) for x in args.mix.split(":"))
        except ValueError:
            raise SystemExit(f"--mix {args.mix!r}: expected ROBOT:VIDEO, e.g. 1:1") from None
        train |= {"robot_weight": robot_weight, "video_weight": video_weight}
    with_planner = getattr(args, "planner", False)
    planner_items = [item for item in args.set if with_planner and item.startswith("planner.")]
    apply_overrides({"model": model, "train": train}, [item for item in args.set if item not in planner_items])
    if "target" in model:
        _check_frozen_target(model, args, path)
    policy_config = model_class.from_dict(model)
    planner = None
    if with_planner:  # the planner's interface fields (cameras, sizes, ...) are the policy's
        from vlajepa.policies.planning import PlannerConfig
        from vlajepa.train.planner import CO_TRAINED_BASE, planner_config_from

        planner_dict = planner_config_from(policy_config, CO_TRAINED_BASE).to_dict()
        apply_overrides({"planner": planner_dict}, planner_items)
        planner = PlannerConfig.from_dict(planner_dict)
    return policy_config, TrainConfig.from_dict(train), planner


def _apply_target_options(model: dict[str, Any], args: argparse.Namespace) -> None:
    """Apply ``--target`` / ``--target-checkpoint`` to a VLA-JEPA config dict, in place."""
    if args.target == "random":
        model["target"] |= {"kind": "frozen", "checkpoint": None}
    elif args.target is not None:
        model["target"]["kind"] = args.target
    if args.target_checkpoint is not None:
        if args.target in ("ema", "random"):
            raise SystemExit(f"--target-checkpoint is a frozen target's weights; it contradicts --target {args.target}")
        model["target"] |= {"kind": "frozen", "checkpoint": str(Path(args.target_checkpoint).resolve())}
    if model["target"]["kind"] == "ema":
        model["target"]["vision"] = None


def _lapa_model(args: argparse.Namespace, preset: Any) -> tuple[dict[str, Any], type]:
    """The LAPA config dict of ``--method lapa-latent`` (the preset's student and action head, the tokens,
    codebook and horizon of the ``--lam`` model) or ``--method lapa`` (the ``--init-from`` latent checkpoint's
    config in the action stage; without one, the preset's, trained from scratch)."""
    from vlajepa.policies import load_policy_config
    from vlajepa.policies.lapa import LAPAConfig, load_lam_config
    from vlajepa.policies.lapa.configuration import lapa_from_student_config

    init_from = getattr(args, "init_from", None)
    if args.method == "lapa-latent":
        if args.lam is None:
            raise SystemExit("--method lapa-latent needs --lam DIR, the latent action model (`vlajepa train-lam`)")
        lam_dir = str(Path(args.lam).resolve())
        if isinstance(preset, LAPAConfig):
            return preset.to_dict() | {"stage": "latent", "lam": lam_dir}, LAPAConfig
        lam = load_lam_config(lam_dir)
        return lapa_from_student_config(preset.to_dict(), lam, stage="latent", lam_dir=lam_dir), LAPAConfig
    if init_from is not None:
        saved = load_policy_config(init_from)
        if not isinstance(saved, LAPAConfig):
            raise SystemExit(f"--method lapa --init-from {init_from}: a {saved.type} checkpoint; LAPA's action "
                             "fine-tuning starts from a `--method lapa-latent` checkpoint")  # fmt: skip
        return saved.to_dict() | {"stage": "action"}, LAPAConfig
    if isinstance(preset, LAPAConfig):
        return preset.to_dict() | {"stage": "action"}, LAPAConfig
    return lapa_from_student_config(preset.to_dict(), None, stage="action", lam_dir=None), LAPAConfig


def _check_frozen_target(model: dict[str, Any], args: argparse.Namespace, preset: Path) -> None:
    """A frozen target without weights would silently train against random features: ask for them instead.

    The frozen encoder's weights are a reference, never part of a checkpoint, so this holds for fine-tuning
    (``--init-from``) too; BC has no target.
    """
    target = model["target"]
    if not model.get("use_world_model", True) or args.target == "random":
        return
    if target["kind"] != "frozen" or target["checkpoint"] is not None:
        return
    if (target.get("vision") or model["vision"]).get("backbone", "vit") != "vit":
        return  # a pretrained backbone: its packaged weights are the frozen target's
    raise SystemExit(
        f"the target encoder is frozen (model.target in {preset}) but has no weights. Pretrain one on the video "
        "set and pass it: `vlajepa pretrain-encoder --video VIDEO_DIR --out ENCODER_DIR`, then "
        "--target-checkpoint ENCODER_DIR/encoder.safetensors. Or choose --target ema, or --target random "
        "(frozen random features, a baseline)."
    )


def _prepare_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    from vlajepa.train.checkpoints import CHECKPOINTS_DIR
    from vlajepa.train.metrics import METRICS_FILE, TENSORBOARD_DIR

    has_run = (out / CHECKPOINTS_DIR).exists()
    if resume or not has_run:
        return
    if not overwrite:
        raise SystemExit(f"{out} already holds a run (checkpoints/); pass --resume to continue it or --overwrite")
    shutil.rmtree(out / CHECKPOINTS_DIR)
    shutil.rmtree(out / TENSORBOARD_DIR, ignore_errors=True)
    (out / METRICS_FILE).unlink(missing_ok=True)


def run_training(args: argparse.Namespace, *, pretrain: bool) -> int:
    """Build the trainer from the options (or resume one) and train; prints a JSON summary."""
    import torch

    from vlajepa.envs.language import missing_canonical_message
    from vlajepa.train.planner import PLANNER_DIR
    from vlajepa.train.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    progress = not args.no_progress
    if args.resume:
        trainer = Trainer.resume(
            out,
            progress=progress,
            steps=args.steps,
            num_workers=args.workers,
            log_every=args.log_every,
            checkpoint_every=args.checkpoint_every,
        )
    else:
        _prepare_out(out, resume=False, overwrite=args.overwrite)
        model_config, train_config, planner = build_configs(args, pretrain=pretrain)
        if pretrain and not train_config.video:
            raise SystemExit("--video is required (world-model pretraining on video)")
        trainer = Trainer(model_config, train_config, out, planner=planner, progress=progress)
    robot = trainer.windows.get("robot")
    problem = robot and missing_canonical_message(robot.dataset.meta.tasks)
    if problem and trainer.is_main:
        print(
            f"vlajepa: warning: {trainer.train_config.robot}: {problem}; re-collect with this version of "
            "`vlajepa collect robot`, which captions every phrasing in turn",
            file=sys.stderr,
        )
    result = trainer.train()
    if trainer.is_main:
        summary = {
            "out": str(out),
            "checkpoint": str(result.checkpoint),
            "step": result.step,
            "final_loss": result.losses[-1] if result.losses else None,
            "wall_time_s": round(result.wall_time_s, 2),
            "samples_per_s": round(result.samples_per_s, 2),
            "processes": trainer.world_size,
            "use_with": f"vlajepa eval --policy checkpoint:{result.checkpoint}",
        }
        if trainer.planner is not None:
            planner_dir = result.checkpoint / PLANNER_DIR
            summary |= {"planner": str(planner_dir), "planner_use_with": f"vlajepa eval --planner {planner_dir}"}
        print(json.dumps(summary, indent=2))
    return 0
