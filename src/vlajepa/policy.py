"""``VLAJEPAPolicy``: a trained VLA-JEPA model behind the evaluation harness's policy interface.

One observation in (LeRobot keys, no batch dimension: ``observation.images.<camera>`` uint8 ``HWC``,
``observation.state`` float32, ``task`` str), an un-normalized action chunk out. The chunk holds the first
``n_action_steps`` actions of the predicted ``H`` (the ones meant to be executed before asking again), and
``select_action`` hands them out one at a time (LeRobot style). Flow-matching noise comes from the policy's
own generator, so ``reseed(seed)`` makes an episode's actions reproducible.

Checkpoints: ``save_pretrained(dir)`` / ``VLAJEPAPolicy.from_pretrained(dir)`` (see
:mod:`vlajepa.checkpoint`).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlajepa.checkpoint import load_model, save_model_files
from vlajepa.config import VLAJEPAConfig
from vlajepa.constants import ACTION, OBS_ENV_STATE, OBS_STATE, TASK, image_key
from vlajepa.models.vla_jepa import VLAJEPA
from vlajepa.normalize import Normalizer


class VLAJEPAPolicy:
    """Implements :class:`vlajepa.eval.policy.Policy` (``reset``, ``predict_action_chunk``)."""

    def __init__(
        self,
        model: VLAJEPA,
        normalizer: Normalizer,
        *,
        n_action_steps: int | None = None,
        num_inference_steps: int | None = None,
        noise_scale: float = 1.0,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.normalizer = normalizer
        self.n_action_steps = n_action_steps or model.config.n_action_steps
        if not 1 <= self.n_action_steps <= model.config.chunk_size:
            raise ValueError(
                f"n_action_steps={self.n_action_steps} must be in [1, {model.config.chunk_size}]"
            )
        self.num_inference_steps = num_inference_steps  # None: the config's action_head.num_inference_steps
        if not 0.0 <= noise_scale <= 1.0:
            raise ValueError(f"noise_scale={noise_scale} must be in [0, 1] (1: the trained noise distribution)")
        self.noise_scale = noise_scale  # flow-matching sampling temperature; 0: deterministic chunks
        self._generator = torch.Generator(self.device).manual_seed(seed)
        self._queue: deque[np.ndarray] = deque()

    @property
    def config(self) -> VLAJEPAConfig:
        return self.model.config

    def reset(self) -> None:
        """Drop actions queued from the previous episode."""
        self._queue.clear()

    def reseed(self, seed: int) -> None:
        """Restart the flow-matching noise from ``seed`` (the harness calls this per episode)."""
        self._generator.manual_seed(seed)

    def get_rng_state(self) -> Tensor:
        """State of the flow-matching noise generator (a server keeps one per connection)."""
        return self._generator.get_state()

    def set_rng_state(self, state: Tensor) -> None:
        self._generator.set_state(state)

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        """Un-normalized actions ``[n_action_steps, A]`` (float32) for one observation."""
        return self.predict_action_chunk_batch([observation])[0]

    @torch.inference_mode()
    def predict_action_chunk_batch(self, observations: list[dict[str, Any]]) -> np.ndarray:
        """Un-normalized actions ``[B, n_action_steps, A]`` for several observations in one forward pass."""
        parts = [self._to_batch(observation) for observation in observations]
        keys = set(parts[0])
        if any(set(part) != keys for part in parts):
            raise ValueError("observations of one batch must all have the same keys (e.g. all with a state)")
        batch: dict[str, Any] = {key: torch.cat([part[key] for part in parts]) for key in keys if key != TASK}
        batch[TASK] = [part[TASK][0] for part in parts]
        chunk = self.model.predict_action(
            batch, self.num_inference_steps, generator=self._generator, noise_scale=self.noise_scale
        )
        actions = chunk[:, : self.n_action_steps].cpu().double().numpy()  # (b, n, A)
        return self.normalizer.unnormalize(ACTION, actions).astype(np.float32)

    @torch.inference_mode()
    def predict_environment_state(self, observation: dict[str, Any]) -> np.ndarray:
        """Where the policy's scene-state read-out puts the objects and the goal (float32 ``[E]``, the units of
        ``observation.environment_state``), from the same inputs as its actions; needs a checkpoint trained with
        ``model.environment_state_dim``."""
        self.model.require_environment_state_head()  # before the observation is checked against the config
        predicted = self.model.predict_environment_state(self._to_batch(observation))
        return self.normalizer.unnormalize(OBS_ENV_STATE, predicted[0].cpu().double().numpy()).astype(np.float32)

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """One action ``[A]``, predicting a new chunk whenever the queue runs out."""
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(observation))
        return self._queue.popleft()

    def _to_batch(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Unbatched numpy observation -> model batch of one (images resized if needed, state normalized)."""
        batch: dict[str, Any] = {}
        for camera in self.config.cameras:
            key = image_key(camera)
            if key not in observation:
                raise KeyError(f"observation has no {key!r}; it has {sorted(observation)}")
            batch[key] = self._image(np.asarray(observation[key]), key)
        if TASK not in observation or not isinstance(observation[TASK], str):
            raise KeyError(f"observation needs {TASK!r} (the instruction string)")
        batch[TASK] = [observation[TASK]]
        if OBS_STATE in observation and (self.config.student.use_state or self.config.action_head.use_state):
            state = np.asarray(observation[OBS_STATE], dtype=np.float64).reshape(-1)
            if state.shape != (self.config.state_dim,):
                raise ValueError(f"{OBS_STATE} has shape {state.shape}; expected ({self.config.state_dim},)")
            state = self.normalizer.normalize(OBS_STATE, state)
            batch[OBS_STATE] = torch.as_tensor(state, dtype=torch.float32, device=self.device)[None]
        return batch

    def _image(self, image: np.ndarray, key: str) -> Tensor:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{key} must be an HWC RGB image, got shape {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        x = torch.as_tensor(np.ascontiguousarray(image), device=self.device).float().div(scale)
        x = x.permute(2, 0, 1)[None]  # (1, 3, h, w)
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp(0.0, 1.0)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``normalization.json`` atomically."""
        return save_model_files(directory, self.model, self.normalizer)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> VLAJEPAPolicy:
        """Load a policy saved by :meth:`save_pretrained` or the trainer; ``kwargs`` go to ``__init__``."""
        model, normalizer = load_model(directory)
        return cls(model, normalizer, **kwargs)


class EstimatedScenePolicy:
    """A policy trained on the privileged state, acting from pixels: the object and goal positions it was trained to
    read from ``observation.state`` come from another policy's scene-state read-out instead of the simulator.

    The classic "privileged actor + learned state estimator" split, here a diagnostic: against the actor with the
    true positions it measures what the estimator's errors cost in closed loop; against an end-to-end pixel policy,
    whether an explicit position bottleneck uses the same perception better. The observation's ``observation.state``
    must be the proprioceptive one; the estimate is appended to it (the ``privileged`` layout,
    :mod:`vlajepa.envs.state`).
    """

    def __init__(self, actor: VLAJEPAPolicy, estimator: VLAJEPAPolicy) -> None:
        missing = actor.config.state_dim - estimator.config.state_dim
        if estimator.config.environment_state_dim != missing or missing <= 0:
            raise ValueError(
                f"the actor's state has {actor.config.state_dim} dims; the estimator's own state "
                f"{estimator.config.state_dim} plus its read-out {estimator.config.environment_state_dim} must match"
            )
        self.actor, self.estimator = actor, estimator

    def reset(self) -> None:
        self.actor.reset()
        self.estimator.reset()

    def reseed(self, seed: int) -> None:
        self.actor.reseed(seed)

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        scene = self.estimator.predict_environment_state(observation)
        proprio = np.asarray(observation[OBS_STATE], dtype=np.float32).reshape(-1)
        return self.actor.predict_action_chunk({**observation, OBS_STATE: np.concatenate([proprio, scene])})
