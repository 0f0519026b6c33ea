"""``vlajepa train-planner``: fit the planner's world model and score around a trained policy checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from vlajepa.commands.arguments import existing_path

EPILOG = """\
examples:
  # the base policy's own episodes (successes and failures), then the planner on demonstrations + rollouts
  vlajepa collect rollouts --policy checkpoint:outputs/bc/checkpoints/last --episodes-per-task 10 \\
      --out data/bc_rollouts
  vlajepa train-planner --policy outputs/bc/checkpoints/last --robot data/mt10_robot \\
      --rollouts data/bc_rollouts --out outputs/bc_planner
  vlajepa eval --planner outputs/bc_planner --episodes 20

The planner checkpoint (--out) holds the world model and the score; it refers to the base policy by path and to
the frozen encoder by package and hash. Every frame is encoded once into a latent cache (--cache-dir), so training
steps cost the small world model and score only. A tenth of each dataset's episodes is held out for
benchmarks/probe_planner.py.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-planner",
        help="train a world-model planner (action-conditioned latent world model + language-goal score)",
        description="Around a trained policy checkpoint (the proposer), train an action- and language-conditioned "
        "latent world model and a score of how close imagined latents are to finishing the instruction, on "
        "demonstrations and the policy's own rollouts. The result is a `planner` policy checkpoint that "
        "`vlajepa eval --planner`, `vlajepa serve --planner` and `load_policy` use.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--policy",
        required=True,
        type=existing_path("policy checkpoint folder", folder=True),
        help="checkpoint directory of the base policy that proposes candidate chunks",
    )
    parser.add_argument(
        "--robot",
        action="append",
        default=[],
        type=existing_path("robot dataset folder", folder=True),
        help="expert LeRobot v3 dataset (repeat for several); episodes without next.success succeed at their end",
    )
    parser.add_argument(
        "--rollouts",
        action="append",
        default=[],
        type=existing_path("rollout dataset folder", folder=True),
        help="the base policy's own episodes (vlajepa collect rollouts; repeat for several)",
    )
    parser.add_argument("--out", required=True, help="planner checkpoint folder")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default 2000)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per step (default 32)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-4)")
    parser.add_argument("--seed", type=int, default=None, help="initialization and data-order seed (default 0)")
    parser.add_argument("--candidates", type=int, default=None, help="candidates per planning step (default 16)")
    parser.add_argument("--cache-dir", default=None, help="latent cache folder (default: <out>/latent_cache)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="planner.FIELD=VALUE (PlannerConfig, e.g. planner.world_model.max_steps=3) or optim.FIELD=VALUE "
        "(TrainConfig, e.g. optim.warmup_steps=200); repeat",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vlajepa.commands.train import apply_overrides
    from vlajepa.policies.planning import PlannerConfig
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.planner import DEFAULT_OPTIM, PlannerTrainConfig, planner_config_for, train_planner

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.robot and not args.rollouts:
        raise SystemExit("give at least one --robot or --rollouts dataset")
    planner = planner_config_for(args.policy).to_dict()
    if args.candidates is not None:
        planner["num_candidates"] = args.candidates
    optim = DEFAULT_OPTIM.to_dict()
    for name, value in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr), ("seed", args.seed)):
        if value is not None:
            optim[name] = value
    apply_overrides({"planner": planner, "optim": optim}, args.overrides)
    train_config = PlannerTrainConfig(
        robot=tuple(args.robot),
        rollouts=tuple(args.rollouts),
        optim=TrainConfig.from_dict(optim),
        cache_dir=args.cache_dir,
    )
    result = train_planner(PlannerConfig.from_dict(planner), train_config, args.out, progress=not args.no_progress)
    summary = {
        "checkpoint": str(result.checkpoint),
        "steps": result.steps,
        "wall_time_s": round(result.wall_time_s, 1),
        "final_losses": {k: round(v, 4) for k, v in result.final_logs.items()},
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
