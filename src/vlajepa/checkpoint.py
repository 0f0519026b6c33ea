"""Model files of a checkpoint directory (Hugging-Face style), written atomically, read with clear errors.

- ``config.json``: ``{"model_type": "vla_jepa", ...VLAJEPAConfig.to_dict()}``;
- ``model.safetensors``: :meth:`VLAJEPA.checkpoint_state_dict` (frozen modules are referenced by the config,
  not copied);
- ``normalization.json``: modes and statistics of the normalized features.

The trainer adds its own files (optimizer, scheduler, RNG, data position) beside these.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vlajepa.config import ConfigError, VLAJEPAConfig, read_json_file
from vlajepa.normalize import NormalizationError, Normalizer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor

    from vlajepa.models.vla_jepa import VLAJEPA

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORMALIZATION_FILE = "normalization.json"
MODEL_TYPE = "vla_jepa"

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or inconsistent; the message names the file."""


def save_model_files(directory: str | Path, model: VLAJEPA, normalizer: Normalizer) -> Path:
    """Write config, weights and normalization of ``model`` into ``directory``."""
    from vlajepa.io_utils import atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(directory / WEIGHTS_FILE, model.checkpoint_state_dict())
    normalizer.save(directory / NORMALIZATION_FILE)
    # The config goes last: its presence marks a complete set of model files.
    atomic_write_json(directory / CONFIG_FILE, {"model_type": MODEL_TYPE, **model.config.to_dict()})
    return directory


def load_config(directory: str | Path) -> VLAJEPAConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; not a checkpoint directory (expected {CONFIG_FILE}, "
            f"{WEIGHTS_FILE}, {NORMALIZATION_FILE})"
        )
    try:
        data = read_json_file(path)
        model_type = data.pop("model_type", None)
        if model_type != MODEL_TYPE:
            raise ConfigError(f"model_type is {model_type!r}, expected {MODEL_TYPE!r}")
        return VLAJEPAConfig.from_dict(data)
    except ConfigError as err:
        message = str(err)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}") from err


def load_weights(directory: str | Path) -> dict:
    return load_safetensors(Path(directory) / WEIGHTS_FILE)


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
    try:
        return Normalizer.load(Path(directory) / NORMALIZATION_FILE)
    except NormalizationError as err:
        raise CheckpointError(str(err)) from err


def load_model(directory: str | Path) -> tuple[VLAJEPA, Normalizer]:
    """``(VLAJEPA, Normalizer)`` from a checkpoint directory."""
    from vlajepa.models.vla_jepa import VLAJEPA

    config = load_config(directory)
    state = load_weights(directory)
    normalizer = load_normalizer(directory)
    target = config.target
    # A frozen target is referenced by path, not copied; acting does not need it, so a policy moved to another
    # machine (e.g. a robot's policy server) still loads. World-model losses would then use unloaded weights.
    target_missing = (
        config.use_world_model
        and target.kind == "frozen"
        and target.checkpoint is not None
        and not Path(target.checkpoint).is_file()
    )
    if target_missing:
        logger.warning(
            "%s: frozen target encoder %s not found; loaded without it (acting does not use the target)",
            directory,
            target.checkpoint,
        )
    model = VLAJEPA(config, load_target_weights=not target_missing)
    try:
        model.load_checkpoint_state_dict(state)
    except ValueError as err:
        raise CheckpointError(f"{Path(directory) / WEIGHTS_FILE}: {err}") from err
    return model.eval(), normalizer
