"""Files of a checkpoint directory (Hugging-Face style), written atomically, read with clear errors.

- ``config.json``: the policy config with its ``type`` and ``config_version`` (:mod:`vlajepa.config`);
- ``model.safetensors``: the policy's weights (frozen modules are referenced by the config, not copied);
- ``normalization.json``: modes and statistics of the normalized features.

:class:`vlajepa.policies.PreTrainedPolicy` reads and writes these; the trainer adds its own files (optimizer,
scheduler, RNG, data position) beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vlajepa.normalize import NormalizationError, Normalizer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORMALIZATION_FILE = "normalization.json"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or inconsistent; the message names the file."""


def save_safetensors(path: str | Path, tensors: Mapping[str, Tensor]) -> None:
    """Write ``tensors`` (moved to CPU, made contiguous) to a safetensors file atomically."""
    from safetensors.torch import save_file

    from vlajepa.io_utils import atomic_write

    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp)))


def load_safetensors(path: str | Path) -> dict:
    """Tensors of a safetensors file; a missing or damaged file raises :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from err


def load_normalizer(directory: str | Path) -> Normalizer:
    """The ``normalization.json`` of a checkpoint directory."""
    try:
        return Normalizer.load(Path(directory) / NORMALIZATION_FILE)
    except NormalizationError as err:
        raise CheckpointError(str(err)) from err
