"""The student: the VLA backbone that sees the current observation and the instruction, nothing else.

One fusion transformer over ``[instruction | current-image views | state | latent-action queries | embodied
queries]``; each view contributes its patch tokens. The attention mask
is ordered like a causal VLM's prefix: observation tokens attend among themselves, latent-action queries attend to
the observation and to each other, embodied queries attend to everything (so they may read the latent actions), and
no query is attended to by an earlier group. Future frames are not an input of this module at all, which is the
leakage rule (docs/architecture.md) by construction.

Multi-view: every camera goes through the same vision encoder; the views of one sample are joined as extra
tokens of that sample (``(b v) n d -> b (v n) d``) with a learned view embedding, so views of different
samples never mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.nn.language import build_text_encoder
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding
from vlajepa.nn.vision import build_vision_encoder
from vlajepa.policies.vla_jepa.configuration import VLAJEPAConfig

# Attention groups, in sequence order: a token may attend to keys of its own group or an earlier one.
_OBSERVATION, _LATENT, _EMBODIED = 0, 1, 2


@dataclass
class StudentOutput:
    """What the student produces for one batch of observations."""

    latent_action_tokens: Tensor  # (b, t-1, k, d): conditions of the world model, one group per future step
    embodied_tokens: Tensor  # (b, m, d): read by the action head
    vision_tokens: (
        Tensor  # (b, v, n, d_vision): current-frame patch tokens (for the anti-collapse regularizer)
    )
    state: Tensor | None = None  # (b, S) the state the student read (None: absent); the action head reads it too


def join_views(tokens: Tensor, num_views: int) -> Tensor:
    """``((b v), n, d) -> (b, v, n, d)``: regroup per-image tokens by sample (never across samples)."""
    return rearrange(tokens, "(b v) n d -> b v n d", v=num_views)


class Student(nn.Module):
    """Fusion transformer: latent-action tokens ``(b, T-1, K, d)`` and embodied tokens ``(b, M, d)``."""

    def __init__(self, config: VLAJEPAConfig) -> None:
        super().__init__()
        cfg = config.student
        dim = cfg.dim
        self.cameras = config.cameras
        self.num_steps = config.clip_length - 1
        self.num_latent = config.num_latent_action_tokens
        self.num_embodied = config.num_embodied_tokens
        self.use_state = cfg.use_state
        self.dim = dim

        self.vision = build_vision_encoder(config.vision, config.image_size)
        self.language = build_text_encoder(config.language)
        self.vision_proj = nn.Linear(self.vision.dim, dim)
        self.text_proj = nn.Sequential(
            nn.LayerNorm(self.language.out_dim), nn.Linear(self.language.out_dim, dim)
        )
        self.view_embed = learned_embedding(len(config.cameras), dim)
        self.text_type = learned_embedding(dim)
        if cfg.use_state:
            self.state_proj = nn.Linear(config.state_dim, dim)
            self.missing_state = learned_embedding(dim)  # stands in for the state of action-free video
        self.latent_queries = learned_embedding(self.num_steps * self.num_latent, dim)
        self.embodied_queries = learned_embedding(self.num_embodied, dim)
        self.transformer = Transformer(dim, cfg.depth, cfg.heads, cfg.mlp_ratio)
        for module in (self.vision_proj, self.text_proj, self.transformer):
            module.apply(init_weights)
        if cfg.use_state:
            self.state_proj.apply(init_weights)

    def encode_views(self, images: Sequence[Tensor]) -> Tensor:
        """Current-frame patch tokens of every view, ``(b, v, n, d_vision)``; ``images`` in camera order."""
        if len(images) != len(self.cameras):
            raise ValueError(f"expected {len(self.cameras)} camera images, got {len(images)}")
        stacked = rearrange(torch.stack(list(images), dim=1), "b v c h w -> (b v) c h w")
        return join_views(self.vision(stacked), len(images))  # ((b v), n, d_vision) -> (b, v, n, d_vision)

    def _attention_mask(self, text_mask: Tensor, num_observation: int) -> Tensor:
        """``(b, n, n)``: group order (observation < latent < embodied), and no key on instruction padding."""
        num_latent = self.latent_queries.shape[0]
        groups = torch.cat(
            [
                torch.full((num_observation,), _OBSERVATION),
                torch.full((num_latent,), _LATENT),
                torch.full((self.num_embodied,), _EMBODIED),
            ]
        ).to(text_mask.device)
        allowed = groups[None, :] <= groups[:, None]  # (n, n): query row, key column
        key_valid = torch.ones(text_mask.shape[0], len(groups), dtype=torch.bool, device=text_mask.device)
        key_valid[:, : text_mask.shape[1]] = text_mask  # the instruction tokens come first
        return allowed[None] & key_valid[:, None, :]

    def forward(self, images: Sequence[Tensor], state: Tensor | None, task: Sequence[str]) -> StudentOutput:
        """``images``: current frames ``(b, 3, H, W)`` in camera order; ``state``: ``(b, S)`` or None."""
        return self.fuse(self.encode_views(images), state, task)

    def fuse(self, vision_tokens: Tensor, state: Tensor | None, task: Sequence[str]) -> StudentOutput:
        """The fusion transformer over :meth:`encode_views` output, the state and the instruction."""
        batch = vision_tokens.shape[0]
        if len(task) != batch:
            raise ValueError(f"got {len(task)} instructions for a batch of {batch}")

        image_tokens = self.vision_proj(vision_tokens)  # (b, v, n, d)
        image_tokens = rearrange(image_tokens + self.view_embed[:, None], "b v n d -> b (v n) d")
        text = self.language(task)
        text_tokens = self.text_proj(text.tokens) + self.text_type  # (b, l, d)

        parts = [text_tokens, image_tokens]
        if self.use_state:
            if state is None:
                parts.append(self.missing_state.expand(batch, 1, -1))
            else:
                parts.append(self.state_proj(state)[:, None])  # (b, 1, d)
        num_observation = sum(p.shape[1] for p in parts)
        parts += [self.latent_queries.expand(batch, -1, -1), self.embodied_queries.expand(batch, -1, -1)]
        x = torch.cat(parts, dim=1)  # (b, n_total, d)

        mask = self._attention_mask(text.mask, num_observation)  # (b, n_total, n_total)
        x = self.transformer(x, mask)
        latent_start = num_observation
        embodied_start = latent_start + self.latent_queries.shape[0]
        latent = rearrange(x[:, latent_start:embodied_start], "b (t k) d -> b t k d", k=self.num_latent)
        return StudentOutput(latent, x[:, embodied_start:], vision_tokens, state)
