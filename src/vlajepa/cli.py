"""Command-line entry point: ``vlajepa <command> [options]``.

Each command lives in its own module under ``vlajepa.commands`` exposing ``register(subparsers)``, which adds a
parser whose ``func`` default runs the command. Modules are imported lazily by name so that ``vlajepa --help`` stays
fast and a command whose optional extra is missing does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> module under vlajepa.commands
COMMANDS: dict[str, str] = {
    "collect": "collect",
    "pretrain": "pretrain",
    "pretrain-encoder": "pretrain_encoder",
    "train": "train",
    "eval": "evaluate",
    "perturb-grid": "perturb_grid",
    "info": "info",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlajepa",
        description="VLA policies pretrained with a JEPA latent world model: collect data, train, evaluate, serve.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"vlajepa.commands.{module_name}")
        except ModuleNotFoundError as err:
            # An optional extra is missing: keep the command visible and say what to install.
            missing = err.name
            stub = subparsers.add_parser(name, help=f"(unavailable: missing module {missing!r})")
            stub.set_defaults(func=_missing(name, missing))
            continue
        module.register(subparsers)
    return parser


def _missing(command: str, module: str | None):
    def run(_args: argparse.Namespace) -> int:
        print(
            f"vlajepa {command}: needs the Python module {module!r}; install the project with "
            f"`bash scripts/setup.sh` (or `pip install -e '.[sim,serve,dev]'`).",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # Bad input (unknown task, corrupt video, missing file, bad config field): the messages name the culprit,
        # so show them without a traceback. VLAJEPA_DEBUG=1 shows the traceback too.
        if os.environ.get("VLAJEPA_DEBUG") == "1":
            raise
        print(f"vlajepa {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
