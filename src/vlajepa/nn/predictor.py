"""Block-causal latent world model: ``z_{t+1} = g(z_t, c_t | blocks < t)``.

The sequence is one block per time step, ``[conditions_t (c tokens), frame-t latents (n tokens)]``. A token of
block ``t`` may attend to every token of blocks ``<= t`` and to none of later blocks, so the prediction read
from block ``t``'s frame tokens (the latents of frame ``t+1``) depends only on frames ``<= t`` and conditions
``<= t``.

With ``residual`` the output is a change added to the frame-``t`` latents, so the predictor starts as the copy
predictor and learns only what moves.

Conditions are generic per-step tokens: the student's latent-action tokens for VLA-JEPA, or (for world-model
action selection) encoded real actions plus instruction tokens. Teacher forcing predicts every step in one
pass from the true latents; :meth:`Predictor.rollout` feeds its own predictions back for multi-step
imagination.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vlajepa.nn.config import PredictorConfig
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding


def block_causal_mask(num_blocks: int, block_size: int, device: torch.device | None = None) -> Tensor:
    """``(n, n)`` boolean mask, ``n = num_blocks * block_size``: True where block(query) >= block(key)."""
    block = torch.arange(num_blocks, device=device).repeat_interleave(block_size)
    return block[:, None] >= block[None, :]


def pool_latents(latents: Tensor, views: int, pool: int) -> Tensor:
    """Average-pool each view's square patch grid by ``pool``: ``(b, t, v*N, d) -> (b, t, v*N/pool^2, d)``.

    Per frame and per view, so pooling never mixes time steps (the leakage rule) or cameras.
    """
    if pool == 1:
        return latents
    side = math.isqrt(latents.shape[2] // views)
    grid = rearrange(latents, "b t (v h w) d -> (b t v) d h w", v=views, h=side)
    pooled = F.avg_pool2d(grid, pool)  # ((b t v), d, h/p, w/p)
    return rearrange(pooled, "(b t v) d h w -> b t (v h w) d", b=latents.shape[0], v=views)


class Predictor(nn.Module):
    """Predicts frame latents ``1..s`` from frame latents ``0..s-1`` and per-step condition tokens."""

    def __init__(
        self,
        config: PredictorConfig,
        latent_dim: int,
        tokens_per_frame: int,
        condition_dim: int,
        conditions_per_step: int,
        max_steps: int,
    ) -> None:
        super().__init__()
        dim = config.dim
        self.max_steps = max_steps
        self.tokens_per_frame = tokens_per_frame
        self.conditions_per_step = conditions_per_step
        self.latent_in = nn.Linear(latent_dim, dim)
        self.condition_in = nn.Linear(condition_dim, dim)
        self.frame_pos = learned_embedding(tokens_per_frame, dim)  # where in the frame (and which view)
        self.condition_pos = learned_embedding(conditions_per_step, dim)  # which condition token of the step
        self.step_embed = learned_embedding(max_steps, dim)  # which time step
        self.transformer = Transformer(dim, config.depth, config.heads, config.mlp_ratio)
        self.latent_out = nn.Linear(dim, latent_dim)
        self.residual = config.residual
        # stands in for hidden context latents (predictor.context_dropout); absent otherwise, so checkpoints saved
        # without it keep loading
        self.mask_token = learned_embedding(dim) if config.context_dropout > 0 else None
        self.apply(init_weights)
        if self.residual:  # start as the copy predictor z_{t+1} = z_t
            nn.init.zeros_(self.latent_out.weight)
            nn.init.zeros_(self.latent_out.bias)

    def forward(self, latents: Tensor, conditions: Tensor, hide_context: Tensor | None = None) -> Tensor:
        """``latents`` ``(b, s, n, d_z)`` of frames ``0..s-1``; ``conditions`` ``(b, s, c, d_c)``;
        ``hide_context`` ``(b,)`` bool: these windows' frame tokens are replaced by the mask token, so their
        predictions read only the conditions (and, with ``residual``, add the change to the frame they hide).

        Returns ``(b, s, n, d_z)``: entry ``t`` is the prediction of frame ``t+1``.
        """
        b, steps, n, _ = latents.shape
        c = conditions.shape[2]
        if conditions.shape[:2] != (b, steps) or n != self.tokens_per_frame or c != self.conditions_per_step:
            raise ValueError(
                f"latents {tuple(latents.shape)} and conditions {tuple(conditions.shape)} do not match "
                f"(n={self.tokens_per_frame}, c={self.conditions_per_step})"
            )
        if steps > self.max_steps:
            raise ValueError(f"{steps} steps exceed the predictor's maximum of {self.max_steps}")
        step = self.step_embed[:steps, None]  # (s, 1, d)
        cond = self.condition_in(conditions) + self.condition_pos + step  # (b, s, c, d)
        frame = self.latent_in(latents)  # (b, s, n, d)
        if hide_context is not None:
            if self.mask_token is None:
                raise ValueError("hiding the context needs a predictor built with context_dropout > 0")
            frame = torch.where(hide_context[:, None, None, None], self.mask_token, frame)
        frame = frame + self.frame_pos + step
        x = rearrange(torch.cat([cond, frame], dim=2), "b s m d -> b (s m) d")
        x = self.transformer(x, block_causal_mask(steps, c + n, device=x.device))
        x = rearrange(x, "b (s m) d -> b s m d", s=steps)
        predicted = self.latent_out(x[:, :, c:])  # (b, s, n, d_z)
        return latents + predicted if self.residual else predicted

    def rollout(self, first: Tensor, conditions: Tensor, first_prediction: Tensor | None = None) -> Tensor:
        """Imagine ``s`` steps from frame-0 latents ``first`` ``(b, n, d_z)``, feeding predictions back.

        ``first_prediction``: this predictor's output for frame 1 from ``first`` and ``conditions[:, :1]`` when
        the caller already has it (teacher forcing computes it: the mask makes step 0 see frame 0 only).
        Returns ``(b, s, n, d_z)``, the predicted latents of frames ``1..s``.
        """
        frames = [first]
        if first_prediction is not None:
            frames.append(first_prediction)
        for step in range(len(frames) - 1, conditions.shape[1]):
            context = torch.stack(frames, dim=1)  # (b, step+1, n, d_z)
            frames.append(self(context, conditions[:, : step + 1])[:, -1])
        return torch.stack(frames[1:], dim=1)
