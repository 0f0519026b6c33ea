"""A tiny deterministic stand-in policy, to test the server and robot-side integrations without a checkpoint.

Its actions depend on every input (image pixels, state, instruction) so a test can tell inputs apart, and on
torch's global random generator (like a flow-matching policy's noise) so seeding and per-connection random
state can be checked. It also has a batched call, so micro-batching can be exercised. A real but untrained
checkpoint comes from :func:`benchmarks.synthetic.save_random_checkpoint`.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
import torch

from vlajepa.constants import OBS_STATE, TASK, image_key
from vlajepa.serve.spec import ImageSpec, PolicySpec


class FakePolicy:
    """``actions = f(image, state, task) + noise_scale * randn(H, D)``, optionally ``delay_s`` per call."""

    def __init__(
        self,
        camera: str = "corner2",
        image_size: int = 16,
        state_dim: int = 4,
        action_dim: int = 4,
        chunk_length: int = 5,
        noise_scale: float = 0.1,
        delay_s: float = 0.0,
    ) -> None:
        self.camera_key = image_key(camera)
        self.image_size = image_size
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.chunk_length = chunk_length
        self.noise_scale = noise_scale
        self.delay_s = delay_s
        self.resets = 0
        self.batch_sizes: list[int] = []

    def serving_spec(self) -> PolicySpec:
        return PolicySpec(
            action_dim=self.action_dim,
            chunk_length=self.chunk_length,
            state_dim=self.state_dim,
            images=(ImageSpec(self.camera_key, self.image_size, self.image_size),),
            model={"name": "FakePolicy"},
        )

    def reset(self) -> None:
        self.resets += 1

    def _mean(self, observation: dict[str, Any]) -> np.ndarray:
        image = np.asarray(observation[self.camera_key], dtype=np.float32) / 255.0
        state = np.asarray(observation[OBS_STATE], dtype=np.float32)
        task = zlib.crc32(observation[TASK].encode("utf-8")) / 2**32
        steps = np.arange(self.chunk_length, dtype=np.float32)[:, None] / self.chunk_length
        dims = np.arange(self.action_dim, dtype=np.float32)[None, :]
        return (image.mean() + task + state.sum() * 0.01 + 0.1 * steps - 0.05 * dims).astype(np.float32)

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        return self.predict_action_chunk_batch([observation])[0]

    def predict_action_chunk_batch(self, observations: list[dict[str, Any]]) -> np.ndarray:
        """Action chunks ``[B, H, D]``; one delay and one noise draw for the whole batch, like a network."""
        self.batch_sizes.append(len(observations))
        if self.delay_s:
            time.sleep(self.delay_s)
        noise = torch.randn(len(observations), self.chunk_length, self.action_dim).numpy()
        means = np.stack([self._mean(observation) for observation in observations])
        return (means + self.noise_scale * noise).astype(np.float32)
