"""Atomic file writes: write to a temporary name beside the target, fsync, then rename over it.

A reader therefore sees either the old file or the complete new one, never a half-written file, even if the
process is killed mid-write.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def with_extension(prefix: str | Path, extension: str) -> Path:
    """``prefix`` plus ``extension`` (``out/noise0.3`` -> ``out/noise0.3.json``): an output prefix may contain a dot,
    which ``Path.with_suffix`` would replace (``out/noise0.json``)."""
    return Path(f"{prefix}{extension}")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then fsync it and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def git_commit() -> str | None:
    """The commit of the checkout the process runs in (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_report_files(prefix: str | Path, report: Any, markdown: str) -> tuple[Path, Path]:
    """A benchmark's results: ``<prefix>.json`` (``report``) and ``<prefix>.md`` (``markdown``), both atomic. A
    dict report records the code's ``git_commit`` and a ``data_revision`` ("unknown" unless the caller set them)."""
    if isinstance(report, dict):
        report = {"git_commit": git_commit() or "unknown", "data_revision": "unknown", **report}
    return atomic_write_json(with_extension(prefix, ".json"), report), atomic_write_text(
        with_extension(prefix, ".md"), markdown
    )


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "JSON file") -> Any:
    """Parse ``path`` as JSON; a missing or malformed file raises ``error`` naming the file and ``what`` it is."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(f"{path}: {what} not found") from err
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err})") from err
