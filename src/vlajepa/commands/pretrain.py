"""``vlajepa pretrain``: latent world-model pretraining on action-free video, optionally with robot data."""

from __future__ import annotations

import argparse

from vlajepa.commands.train import add_training_arguments, run_training

EPILOG = """\
examples (the default preset's frozen target is its packaged ImageNet encoder; the vit preset's comes from
`vlajepa pretrain-encoder`):
  vlajepa pretrain --video data/mt10_video --robot data/mt10_robot --mix 1:3 --out outputs/pretrain
  vlajepa train --init-from outputs/pretrain/checkpoints/last --robot data/mt10_robot --out outputs/finetune
  vlajepa pretrain --config vit --video data/mt10_video --target-checkpoint outputs/encoder/encoder.safetensors \\
      --out outputs/pretrain_vit
  vlajepa train --init-from outputs/pretrain_vit/checkpoints/last --robot data/mt10_robot \\
      --target-checkpoint outputs/encoder/encoder.safetensors --out outputs/finetune_vit

Robot windows join as world-model data (their actions are not used) unless --robot-actions is given, in which
case robot batches cost L_action + beta * L_wm as in co-training. Resume with --resume, as for `vlajepa train`.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain the JEPA latent world model on action-free video (optionally with robot data)",
        description="Stage one of VLA-JEPA: the student learns latent-action tokens from which the predictor "
        "forecasts the target encoder's latents of future frames, on video without actions. The checkpoint "
        "initializes `vlajepa train --init-from` (stage two: fine-tuning with actions).",
        epilog=EPILOG,
    )
    add_training_arguments(parser)
    parser.add_argument(
        "--robot-actions", action="store_true", help="also train the action head on the robot data's actions"
    )
    parser.set_defaults(func=lambda args: run_training(args, pretrain=True))
