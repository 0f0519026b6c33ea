"""``vlajepa train-lam``: LAPA's latent action model from frame pairs of robot data and/or action-free video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlajepa.commands.arguments import config_preset, existing_path

EPILOG = """\
the LAPA recipe (the same student and action head as VLA-JEPA, from the same --config preset):
  vlajepa train-lam --robot data/mt10_robot --video data/mt10_video --out outputs/lam
  vlajepa pretrain --method lapa-latent --lam outputs/lam --robot data/mt10_robot --video data/mt10_video \\
      --mix 1:1 --batches-per-step 2 --out outputs/lapa_latent
  vlajepa train --method lapa --init-from outputs/lapa_latent/checkpoints/last --robot data/mt10_robot \\
      --out outputs/lapa

files in --out: lam.safetensors, lam_config.json (written last: a complete model), lam_train_config.json,
metrics.jsonl (reconstruction error against the copy-o_t baseline, codebook perplexity, dead codes).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-lam",
        help="train LAPA's latent action model (NSVQ codes of frame pairs, pixel reconstruction)",
        description="A spatio-temporal encoder of (o_t, o_{t+H}), NSVQ codes of the difference of the two frames' "
        "encodings, and a decoder that reconstructs o_{t+H} from o_t and the codes (L2). Its codes are the labels "
        "of LAPA's latent pretraining (`vlajepa pretrain --method lapa-latent --lam OUT`).",
        epilog=EPILOG,
    )
    parser.add_argument("--robot", default=None, type=existing_path("dataset folder", folder=True),
                        help="LeRobot v3 dataset (its actions are not used)")  # fmt: skip
    parser.add_argument("--video", default=None, type=existing_path("video set folder", folder=True),
                        help="action-free video set (mp4 + captions.csv)")  # fmt: skip
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", default="default", type=config_preset,
                        help="preset whose model: section gives the camera (the first), image size, patch size and "
                        "chunk size (the default horizon) (default: default)")  # fmt: skip
    parser.add_argument("--horizon", type=int, default=None,
                        help="frames between o_t and o_{t+H} (default: the preset's chunk_size)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1000)")
    parser.add_argument("--batch-size", type=int, default=None, help="frame pairs per step (default 32)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-4)")
    parser.add_argument("--seed", type=int, default=None, help="seed of initialization and data order (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field: lam.FIELD (LAMConfig) or train.FIELD (LAMTrainConfig), e.g. "
                        "--set lam.codebook_size=16 --set train.replace_every=100 (repeatable)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vlajepa.commands.train import apply_overrides
    from vlajepa.config import PolicyConfig
    from vlajepa.policies.lapa import LAMConfig, LAMTrainConfig
    from vlajepa.presets import preset_path
    from vlajepa.train.lam import train_lam

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.robot and not args.video:
        raise SystemExit("give --robot and/or --video: the frame pairs to learn from")
    interface = PolicyConfig.from_yaml(preset_path(args.config))
    vision = getattr(interface, "vision", None)  # the student's patch size, where it has one
    patch = vision.patch_size if vision is not None and vision.backbone == "vit" else LAMConfig.patch_size
    lam = LAMConfig(image_size=interface.image_size, camera=interface.cameras[0], patch_size=patch,
                    horizon=args.horizon or interface.chunk_size).to_dict()  # fmt: skip
    named = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    train = LAMTrainConfig().to_dict() | {k: v for k, v in named.items() if v is not None}
    apply_overrides({"lam": lam, "train": train}, args.set)
    lam_config, train_config = LAMConfig.from_dict(lam), LAMTrainConfig.from_dict(train)
    result = train_lam(lam_config, train_config, args.out, interface=interface, robot=args.robot, video=args.video,
                       progress=not args.no_progress)  # fmt: skip
    summary = {"out": str(Path(args.out)), **result.final, "wall_time_s": round(result.wall_time_s, 1),
               "use_with": f"vlajepa pretrain --method lapa-latent --lam {args.out}"}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0

