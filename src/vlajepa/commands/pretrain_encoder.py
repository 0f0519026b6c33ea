"""``vlajepa pretrain-encoder``: a self-supervised frozen target encoder from the action-free video set."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from vlajepa.commands.arguments import config_preset, existing_path

EPILOG = """\
examples:
  vlajepa pretrain-encoder --video data/mt10_video --out outputs/encoder
  vlajepa train --config vit --robot data/mt10_robot --video data/mt10_video \\
      --target-checkpoint outputs/encoder/encoder.safetensors --out outputs/cotrain_vit

The encoder's architecture is the --config preset's model.vision (and image_size), so the checkpoint fits that
preset's `target: {kind: frozen}` as is. outputs/encoder/encoder_config.json holds the exact target section.
The `default` preset needs no such step: its frozen target is the packaged, ImageNet-pretrained EfficientNet-Lite0.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain-encoder",
        help="pretrain a frozen target encoder on action-free video (V-JEPA-style masked latent prediction)",
        description="A context encoder sees a masked subset of each frame's patches; a small predictor predicts "
        "an EMA target encoder's latents of the hidden patches (L1). The EMA target is saved as "
        "<out>/encoder.safetensors, loadable with `--target-checkpoint` / `target.checkpoint`.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--video",
        required=True,
        type=existing_path("video set folder", folder=True),
        help="action-free video set (mp4 + captions.csv)",
    )
    parser.add_argument("--out", required=True, help="output folder (encoder.safetensors, encoder_config.json)")
    parser.add_argument(
        "--config",
        default="vit",
        type=config_preset,
        help="preset name or YAML file whose ViT model.vision is trained (default: vit)",
    )
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1000)")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per step (default 64)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    parser.add_argument("--mask-ratio", type=float, default=None, help="fraction of patches hidden (default 0.6)")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of parameter init, frame sampling and masks (default 0)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress lines (metrics.jsonl in --out is written anyway)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vlajepa.policies import VLAJEPAConfig
    from vlajepa.presets import preset_path
    from vlajepa.train.encoder_pretrain import EncoderPretrainConfig, pretrain_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    model_config = VLAJEPAConfig.from_yaml(preset_path(args.config))
    vision = model_config.target.vision or model_config.vision
    if vision.backbone != "vit":
        raise SystemExit(
            f"--config {args.config}: its vision encoder is the pretrained {vision.backbone}, whose weights come from "
            "its package; pretrain-encoder trains a ViT (e.g. --config vit)"
        )
    overrides = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "mask_ratio": args.mask_ratio,
        "seed": args.seed,
    }
    config = EncoderPretrainConfig(image_size=model_config.image_size, vision=vision)
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    result = pretrain_encoder(config, args.video, args.out, on_log=None if args.no_progress else _progress(config))
    summary = {
        "encoder": str(result.encoder_path),
        "frames": result.frames,
        "steps": config.steps,
        "first_loss": round(result.losses[0], 4) if result.losses else None,
        "last_loss": round(sum(result.losses[-20:]) / max(1, len(result.losses[-20:])), 4) if result.losses else None,
        "wall_time_s": round(result.wall_time_s, 1),
        "use_with": f"--target-checkpoint {result.encoder_path}",
    }
    print(json.dumps(summary, indent=2))
    return 0


def _progress(config):
    """One line on stderr per metrics line, so a long run shows it is moving (also when piped to a log)."""

    def log(line: dict) -> None:
        print(  # noqa: T201 - CLI progress output
            f"pretrain-encoder: step {line['step']}/{config.steps} loss {line['loss']:.4f} "
            f"target_std {line['target_std']:.3f} ({line['elapsed_s']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    return log
