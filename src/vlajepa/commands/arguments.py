"""Argument types shared by the commands: path checks that run while argparse reads the command line.

argparse converts options in the order they were typed, so a missing dataset or weights file is reported first,
naming the option, before any model is built or any other check runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def existing_path(what: str, *, folder: bool) -> Callable[[str], str]:
    """An argparse ``type`` that accepts an existing folder (``folder=True``) or file and returns the text as typed;
    ``what`` names the expected thing in the error ("dataset folder", "encoder weights file")."""

    def check(text: str) -> str:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text}: no such {what}")
        if folder and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: expected a {what}, found a file")
        if not folder and path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: expected a {what}, found a folder")
        return text

    return check


def checked_by(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse ``type`` that runs ``parse`` on the text only to check it (its ValueError message becomes the
    error, naming the option) and returns the text as typed, for the command to parse again when it runs."""

    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text

    return check


def policy_argument(text: str) -> str:
    """An argparse ``type`` for ``--policy``: a ``checkpoint:PATH`` must name an existing folder; returns the text."""
    kind, _, path = text.partition(":")
    if kind == "checkpoint" and path and not Path(path).is_dir():
        raise argparse.ArgumentTypeError(f"{path}: no such checkpoint folder")
    return text


def config_preset(text: str) -> str:
    """An argparse ``type`` for ``--config``: a packaged preset's name or a YAML file; returns the text as typed."""
    from vlajepa.presets import preset_path

    return checked_by(preset_path)(text)


def add_planner_arguments(source: argparse._MutuallyExclusiveGroup, parser: argparse.ArgumentParser) -> None:
    """``--planner DIR`` (in the command's group of policy sources) with ``--candidates`` and ``--cem-iterations``,
    which override the planner's saved values (:func:`planner_options` reads them)."""
    source.add_argument(
        "--planner",
        type=existing_path("planner checkpoint folder", folder=True),
        help="a planner checkpoint (vlajepa train-planner): its base policy proposes, its world model chooses",
    )
    parser.add_argument(
        "--candidates", type=int, default=None, help="planners: candidate chunks per planning step (default: saved)"
    )
    parser.add_argument(
        "--cem-iterations", type=int, default=None, help="planners: CEM refinement rounds (default: saved)"
    )


def planner_options(args: argparse.Namespace) -> dict[str, int]:
    """The planner overrides given on the command line (SystemExit when they come without ``--planner``)."""
    options = {"num_candidates": args.candidates, "cem_iterations": args.cem_iterations}
    options = {name: value for name, value in options.items() if value is not None}
    if options and args.planner is None:
        raise SystemExit("--candidates and --cem-iterations apply to --planner only")
    return options
