"""Training checkpoints: ``<out>/checkpoints/<step>/`` plus a ``last`` link, written atomically.

A checkpoint directory holds the model files of :mod:`vlajepa.checkpoint` (so
``VLAJEPAPolicy.from_pretrained(<checkpoint>)`` works) and what an exact resume needs:

- ``optimizer.pt``: AdamW state (trainable parameters only);
- ``scheduler.pt``: learning-rate scheduler state;
- ``rng_state_<rank>.pt``: python, numpy and torch RNG states of each training process;
- ``training_state.json``: step, data-stream position, samples seen, wall time;
- ``train_config.json``: the :class:`~vlajepa.train.config.TrainConfig` of the run.

Everything is written into ``checkpoints/.tmp-<step>/``, fsynced, then renamed to ``checkpoints/<step>/``; the
``last`` symlink is replaced atomically afterwards. A run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlajepa.checkpoint import CheckpointError
from vlajepa.io_utils import atomic_write

CHECKPOINTS_DIR = "checkpoints"
LAST = "last"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
TRAINING_STATE_FILE = "training_state.json"
TRAIN_CONFIG_FILE = "train_config.json"


def rng_file(rank: int) -> str:
    return f"rng_state_{rank}.pt"


def step_name(step: int) -> str:
    """Directory name of the checkpoint after ``step`` optimizer steps (zero-padded so names sort by step)."""
    return f"{step:08d}"


def checkpoints_root(out: str | Path) -> Path:
    return Path(out) / CHECKPOINTS_DIR


def temporary_dir(out: str | Path, step: int) -> Path:
    return checkpoints_root(out) / f".tmp-{step_name(step)}"


# ----------------------------------------------------------------------------------------------------------
# RNG
# ----------------------------------------------------------------------------------------------------------


def get_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU) RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np.asarray(np_state["keys"], dtype=np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: Path) -> Any:
    """``torch.load`` with tensors and plain types only; a missing or damaged file raises naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint cannot be resumed")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: corrupt or truncated ({type(err).__name__}: {err})") from err


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint cannot be resumed")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt ({err})") from err


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(out: str | Path, step: int, keep: int) -> Path:
    """Rename the finished temporary checkpoint of ``step`` into place, point ``last`` at it, prune old ones."""
    root = checkpoints_root(out)
    tmp, final = temporary_dir(out, step), root / step_name(step)
    _fsync_dir(tmp)
    if final.exists():  # the same step written again (e.g. a resumed run re-saving): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    link_tmp = root / f".{LAST}.tmp"
    link_tmp.unlink(missing_ok=True)
    os.symlink(final.name, link_tmp)
    os.replace(link_tmp, root / LAST)
    _fsync_dir(root)
    if keep:
        steps = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit())
        for old in steps[:-keep]:
            if old != final:
                shutil.rmtree(old)
    return final


def last_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint ``last`` points to, or None when the run has none."""
    link = checkpoints_root(out) / LAST
    if not link.exists():
        return None
    return link.resolve()
