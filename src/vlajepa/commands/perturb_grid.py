"""``vlajepa perturb-grid``: a PNG of every robustness perturbation (and the domain shift) on one task."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "perturb-grid",
        help="render every robustness perturbation of a task as a PNG grid",
        description="Render the first frame of one episode under each of the seven robustness perturbations "
        "at severities 1-3, plus the action-free domain shift, next to the unperturbed original.",
    )
    parser.add_argument("--task", default="pick-place-v3", help="MetaWorld task (default: pick-place-v3)")
    parser.add_argument("--out", default="docs/perturbations.png", help="output PNG path")
    parser.add_argument("--image-size", type=int, default=128, help="side of each rendered image in pixels")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (and perturbation seed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vlajepa.envs import render_perturbation_grid

    result = render_perturbation_grid(args.task, args.out, image_size=args.image_size, seed=args.seed)
    print(result.path)  # noqa: T201 - CLI output
    return 0
