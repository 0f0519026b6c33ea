"""Command-line entry point: ``vlajepa [--debug] <command> [options]``.

Each command lives in its own module under ``vlajepa.commands`` exposing ``register(subparsers)``, which adds a
parser whose ``func`` default runs the command. Modules are imported lazily by name so that ``vlajepa --help`` stays
fast and a command whose optional extra is missing does not break the others.

Errors are reported here, in one place: a bad argument, a missing file, a corrupt dataset or checkpoint, or any
error class of the project is printed as one line, ``vlajepa <command>: error: <message>``, and the exit status is
2. ``vlajepa --debug <command> ...`` (or ``VLAJEPA_DEBUG=1``) prints the traceback too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
import traceback
from typing import NoReturn

# command name -> module under vlajepa.commands
COMMANDS: dict[str, str] = {
    "collect": "collect",
    "pretrain": "pretrain",
    "pretrain-encoder": "pretrain_encoder",
    "train": "train",
    "train-lam": "train_lam",
    "train-planner": "train_planner",
    "eval": "evaluate",
    "perturb-grid": "perturb_grid",
    "info": "info",
    "serve": "serve",
}

EXIT_ERROR = 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs: prose (runs of unindented lines) is refilled to the terminal's width; indented
    lines (examples, recipe commands, tables) are kept as written, so commands can be copied whole."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                out.append(textwrap.fill(" ".join(paragraph), width, initial_indent=indent, subsequent_indent=indent))
                paragraph.clear()

        for line in text.splitlines():
            if line.strip() and not line[0].isspace():
                paragraph.append(line.strip())
                continue
            flush()
            out.append(indent + line if line.strip() else "")
        flush()
        return "\n".join(out) + ("\n" if text.endswith("\n") else "")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's help layout, and usage errors as one line that points to ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="vlajepa",
        description="VLA policies pretrained with a JEPA latent world model: collect data, train, evaluate, serve.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback as well as the one-line message (same as VLAJEPA_DEBUG=1)",
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
        raise SystemExit(
            f"needs the Python module {module!r}; install the project with `make setup` "
            f"(or `pip install -e '.[sim,serve,dev]'`)"
        )

    return run


def _is_reported(err: BaseException) -> bool:
    """Errors shown as one line: bad input or state whose message names the culprit. That is every error class of
    the project (checkpoint, config, dataset, decode, normalization, observation, target encoder, non-finite loss,
    ...), ValueError, KeyError and OSError (missing or unreadable files), and ``SystemExit("message")``, the
    commands' way of refusing a combination of options."""
    if isinstance(err, SystemExit):
        return isinstance(err.code, str)
    if isinstance(err, (ValueError, KeyError, OSError)):
        return True
    return type(err).__module__.split(".")[0] == "vlajepa"


def error_message(err: BaseException) -> str:
    """The one-line message of a reported error."""
    if isinstance(err, SystemExit):
        text = str(err.code)
    elif isinstance(err, KeyError) and len(err.args) == 1:
        text = f"missing key {err.args[0]!r}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run ``vlajepa`` with ``argv`` (default: the process arguments) and return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    debug = args.debug or os.environ.get("VLAJEPA_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - filtered by _is_reported, the rest is re-raised
        if not _is_reported(err):
            raise
        if debug:
            traceback.print_exc()
        print(f"vlajepa {args.command}: error: {error_message(err)}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
