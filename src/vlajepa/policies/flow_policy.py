"""The acting half shared by every policy that reads a student and samples chunks from a flow-matching head
(VLA-JEPA, BC, LAPA): the policy's own noise generator, sampling, and candidate proposals for a planner.

A subclass builds ``self.action_head`` (a :class:`~vlajepa.nn.action_head.FlowMatchingActionHead`) and implements
``encode(batch)``, which returns the student's outputs (``embodied_tokens`` ``(b, M, d)`` and ``state``) from the
current observation only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from vlajepa.config import PolicyConfig
from vlajepa.normalize import Normalizer
from vlajepa.policies.base import PreTrainedPolicy


class FlowPolicy(PreTrainedPolicy):
    """A student + flow-matching head policy (see the module docstring); not registered itself."""

    def __init__(
        self,
        config: PolicyConfig,
        normalizer: Normalizer | None = None,
        *,
        n_action_steps: int | None = None,
        num_inference_steps: int | None = None,
        noise_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        """``num_inference_steps``: Euler steps per chunk (None: ``action_head.num_inference_steps``);
        ``noise_scale``: flow-matching sampling temperature in ``[0, 1]`` (0: deterministic chunks); ``seed``: of the
        policy's own noise generator."""
        super().__init__(config, normalizer, n_action_steps=n_action_steps)
        if not 0.0 <= noise_scale <= 1.0:
            raise ValueError(f"noise_scale={noise_scale} must be in [0, 1] (1: the trained noise distribution)")
        self.num_inference_steps = num_inference_steps
        self.noise_scale = noise_scale
        self._generator = torch.Generator().manual_seed(seed)

    def encode(self, batch: Mapping[str, Any]) -> Any:
        """The student's outputs for a preprocessed batch (subclasses)."""
        raise NotImplementedError

    def _get(self, batch: Mapping[str, Any], key: str) -> Any:
        if key not in batch:
            raise KeyError(f"batch has no {key!r}; it has {sorted(batch)}")
        return batch[key]

    def reseed(self, seed: int) -> None:
        """Restart the flow-matching noise from ``seed`` (the harness calls this per episode)."""
        self._generator.manual_seed(seed)

    def get_rng_state(self) -> Tensor:
        """State of the flow-matching noise generator (a server keeps one per connection)."""
        return self._generator.get_state()

    def set_rng_state(self, state: Tensor) -> None:
        self._generator.set_state(state)

    def _device_generator(self) -> torch.Generator:
        """The policy's generator, moved along when the policy moved to another device (the same noise stream)."""
        if self._generator.device != self.device:
            seed = int(torch.randint(2**62, (1,), generator=self._generator))
            self._generator = torch.Generator(self.device).manual_seed(seed)
        return self._generator

    @torch.no_grad()
    def predict_action(
        self,
        batch: Mapping[str, Any],
        num_steps: int | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> Tensor:
        """Normalized action chunks ``(b, H, A)`` from a preprocessed batch (``num_steps`` Euler steps,
        ``noise_scale`` as in :meth:`FlowMatchingActionHead.sample`)."""
        out = self.encode(batch)
        return self.action_head.sample(
            out.embodied_tokens, out.state, num_steps, noise, generator, noise_scale=noise_scale
        )

    def sample_actions(self, batch: Mapping[str, Any]) -> Tensor:
        """The acting path: :meth:`predict_action` with this policy's sampling settings and generator."""
        return self.predict_action(
            batch, self.num_inference_steps, generator=self._device_generator(), noise_scale=self.noise_scale
        )

    @torch.no_grad()
    def sample_candidates(
        self,
        batch: Mapping[str, Any],
        num_candidates: int,
        *,
        noise_scale: float = 1.0,
        include_deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(b, N, H, A)``: ``N`` flow-head samples per observation from independent noise and one student pass;
        with ``include_deterministic`` the first is the deterministic chunk (noise 0)."""
        out = self.encode(batch)
        b = out.embodied_tokens.shape[0]
        shape = (b, num_candidates, self.config.chunk_size, self.config.action_dim)
        noise = noise_scale * torch.randn(shape, generator=generator or self._generator).to(self.device)
        if include_deterministic:
            noise[:, 0] = 0.0
        context = repeat(out.embodied_tokens, "b m d -> (b k) m d", k=num_candidates)
        state = None if out.state is None else repeat(out.state, "b s -> (b k) s", k=num_candidates)
        chunks = self.action_head.sample(
            context, state, self.num_inference_steps, rearrange(noise, "b k h a -> (b k) h a")
        )
        return rearrange(chunks, "(b k) h a -> b k h a", k=num_candidates)
