"""The one input/output pipeline between the outside world and a policy's network (openpi's mirror of input and
output transforms): every caller that acts — ``vlajepa eval``, the policy server, a Python user — goes through it.

Input steps, in order, on unbatched observations with LeRobot keys:

1. images: ``observation.images.<camera>`` uint8 (or float in ``[0, 1]``) ``HWC`` RGB -> float ``(1, 3, S, S)``,
   resized to the policy's ``image_size`` (bilinear, antialiased) when the camera renders another size;
2. state: ``observation.state`` -> normalized with the checkpoint's statistics (only if the policy reads a state);
3. instruction: ``task`` str -> a list of one;
4. collate: the observations of one call stacked into one batch.

Output steps, the mirror: normalized actions ``(b, n, A)`` -> un-normalized float32 numpy in the environment's
action space. Training windows are normalized by the same :class:`~vlajepa.normalize.Normalizer`, saved beside the
weights as ``normalization.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlajepa.config import PolicyConfig
from vlajepa.constants import ACTION, OBS_STATE, TASK, image_key
from vlajepa.normalize import Normalizer


class Processor:
    """Pre- and post-processing of one policy (its cameras, image size, state width and normalization)."""

    def __init__(self, config: PolicyConfig, normalizer: Normalizer) -> None:
        self.config = config
        self.normalizer = normalizer

    # ------------------------------------------------------------------ inputs

    def preprocess(self, observations: Sequence[dict[str, Any]], device: torch.device | str = "cpu") -> dict[str, Any]:
        """A model batch from unbatched observations (input steps 1-4)."""
        if not observations:
            raise ValueError("no observations to process")
        parts = [self._one(observation, torch.device(device)) for observation in observations]
        keys = set(parts[0])
        if any(set(part) != keys for part in parts):
            raise ValueError("observations of one batch must all have the same keys (e.g. all with a state)")
        batch: dict[str, Any] = {key: torch.cat([part[key] for part in parts]) for key in keys if key != TASK}
        batch[TASK] = [part[TASK][0] for part in parts]
        return batch

    def _one(self, observation: dict[str, Any], device: torch.device) -> dict[str, Any]:
        batch: dict[str, Any] = {}
        for camera in self.config.cameras:
            key = image_key(camera)
            if key not in observation:
                raise KeyError(f"observation has no {key!r}; it has {sorted(observation)}")
            batch[key] = self.image(np.asarray(observation[key]), key, device)
        if TASK not in observation or not isinstance(observation[TASK], str):
            raise KeyError(f"observation needs {TASK!r} (the instruction string)")
        batch[TASK] = [observation[TASK]]
        if OBS_STATE in observation and self.config.uses_state:
            state = np.asarray(observation[OBS_STATE], dtype=np.float64).reshape(-1)
            if state.shape != (self.config.state_dim,):
                raise ValueError(f"{OBS_STATE} has shape {state.shape}; expected ({self.config.state_dim},)")
            state = self.normalizer.normalize(OBS_STATE, state)
            batch[OBS_STATE] = torch.as_tensor(state, dtype=torch.float32, device=device)[None]
        return batch

    def image(self, image: np.ndarray, key: str, device: torch.device) -> Tensor:
        """``HWC`` RGB (uint8, or float in ``[0, 1]``) -> float ``(1, 3, S, S)`` in ``[0, 1]``."""
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{key} must be an HWC RGB image, got shape {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        x = torch.as_tensor(np.ascontiguousarray(image), device=device).float().div(scale)
        x = x.permute(2, 0, 1)[None]  # (1, 3, h, w)
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0.0, 1.0)

    # ------------------------------------------------------------------ outputs

    def postprocess(self, actions: Tensor) -> np.ndarray:
        """Normalized ``(b, n, A)`` actions -> un-normalized float32 numpy (the output step)."""
        return self.normalizer.unnormalize(ACTION, actions.cpu().double().numpy()).astype(np.float32)
