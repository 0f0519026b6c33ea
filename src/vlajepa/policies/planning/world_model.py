"""The planner's latent world model and its language-goal score.

- :class:`LatentWorldModel`: ``g(z_{<=t}, a_{t..t+s-1}, l) -> z_{t+s}``. ``z`` are the latents of a frozen encoder
  (by default the packaged ImageNet EfficientNet-Lite0), average-pooled and standardized with statistics of the
  training data; each world-model step is ``s = frame_stride`` environment steps. The block-causal
  :class:`~vlajepa.nn.predictor.Predictor` reads, per step, one token of the step's real normalized actions and one
  token of the instruction (the mean of the frozen instruction encoder's token features), so a step's prediction
  depends on frames and actions up to that step only.
- :class:`LatentScore`: ``score(z, l)``, a small transformer over ``[instruction token, latent tokens]`` whose
  output is the logit of a value in ``[0, 1]``: how close the scene is to finishing the instruction.

Both read latents and the instruction only, never simulator state; the encoder sees one frame at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from vlajepa.nn.config import VisionConfig
from vlajepa.nn.language import build_text_encoder
from vlajepa.nn.predictor import Predictor, pool_latents
from vlajepa.nn.target import TargetEncoder
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding
from vlajepa.nn.vision import build_vision_encoder
from vlajepa.policies.planning.configuration import ScoreConfig, WorldModelConfig


def build_frozen_encoder(config: VisionConfig, image_size: int, seed: int) -> TargetEncoder:
    """The world model's frozen per-frame encoder (a ViT's random weights are drawn from ``seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_vision_encoder(config, image_size)
    return TargetEncoder(encoder.eval(), "frozen")


def sentence_embedding(text_encoder: nn.Module, texts: Sequence[str]) -> Tensor:
    """``(b, d)``: the mean of each instruction's token features (MiniLM's sentence embedding)."""
    encoded = text_encoder(list(texts))
    mask = encoded.mask[..., None].to(encoded.tokens.dtype)
    return (encoded.tokens * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class LatentWorldModel(nn.Module):
    """Frozen encoder + instruction encoder + action-conditioned block-causal predictor (see the module docstring)."""

    def __init__(
        self, config: WorldModelConfig, *, action_dim: int, frame_stride: int, image_size: int, views: int
    ) -> None:
        super().__init__()
        self.config = config
        self.frame_stride = frame_stride
        self.views = views
        self.encoder = build_frozen_encoder(config.encoder, image_size, config.encoder_seed)
        side = math.isqrt(self.encoder.tokens_per_view)
        if side * side != self.encoder.tokens_per_view or side % config.latent_pool:
            raise ValueError(
                f"world_model.latent_pool={config.latent_pool} does not divide the encoder's {side}x{side} token grid"
            )
        self.language = build_text_encoder(config.language)
        self.tokens_per_frame = views * self.encoder.tokens_per_view // config.latent_pool**2
        self.latent_dim = self.encoder.dim
        self.text_dim = int(self.language.out_dim)
        width = config.predictor.dim
        self.action_in = nn.Sequential(nn.Linear(frame_stride * action_dim, width), nn.GELU(), nn.Linear(width, width))
        self.text_in = nn.Linear(self.text_dim, width)
        self.predictor = Predictor(
            config.predictor,
            latent_dim=self.latent_dim,
            tokens_per_frame=self.tokens_per_frame,
            condition_dim=width,
            conditions_per_step=2,  # [actions of the step, instruction]
            max_steps=config.max_steps,
        )
        self.action_in.apply(init_weights)
        self.text_in.apply(init_weights)
        # standardization of the pooled latents (per channel), set from the training data by the trainer
        self.register_buffer("latent_mean", torch.zeros(self.latent_dim))
        self.register_buffer("latent_std", torch.ones(self.latent_dim))

    @torch.no_grad()
    def frame_tokens(self, images: Sequence[Tensor]) -> Tensor:
        """The frozen encoder's tokens ``(b, v*N, d)`` of one frame per camera (each ``(b, 3, H, W)``): what a latent
        cache stores for that frame."""
        return self.encoder([image[:, None] for image in images])[:, 0]

    def latents_from_tokens(self, tokens: Tensor) -> Tensor:
        """Pooled, standardized latents ``(b, n, d)`` from :meth:`frame_tokens` output."""
        pooled = pool_latents(tokens[:, None], self.views, self.config.latent_pool)[:, 0]
        return (pooled - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def encode(self, images: Sequence[Tensor]) -> Tensor:
        """Standardized latents ``(b, n, d)`` of the current frame (one ``(b, 3, H, W)`` image per camera)."""
        return self.latents_from_tokens(self.frame_tokens(images))

    def instruction(self, texts: Sequence[str]) -> Tensor:
        """``(b, d_text)`` instruction embeddings (frozen MiniLM: no gradient reaches it)."""
        return sentence_embedding(self.language, texts)

    def conditions(self, actions: Tensor, instruction: Tensor) -> Tensor:
        """Per-step condition tokens ``(b, s, 2, w)`` from normalized actions ``(b, s * frame_stride, A)``."""
        steps = actions.shape[1] // self.frame_stride
        if steps * self.frame_stride != actions.shape[1]:
            raise ValueError(f"{actions.shape[1]} actions are not a whole number of {self.frame_stride}-step blocks")
        per_step = rearrange(actions, "b (s k) a -> b s (k a)", k=self.frame_stride)
        action_token = self.action_in(per_step)  # (b, s, w)
        text_token = repeat(self.text_in(instruction), "b w -> b s w", s=steps)
        return torch.stack([action_token, text_token], dim=2)

    def forward(self, latents: Tensor, actions: Tensor, instruction: Tensor) -> Tensor:
        """Teacher forcing: ``latents`` ``(b, s, n, d)`` of frames ``0..s-1`` -> predictions of frames ``1..s``."""
        return self.predictor(latents, self.conditions(actions, instruction))

    def imagine(self, first: Tensor, actions: Tensor, instruction: Tensor) -> Tensor:
        """Roll out from the current latents ``first`` ``(b, n, d)``: ``(b, s, n, d)`` imagined frames ``1..s``."""
        return self.predictor.rollout(first, self.conditions(actions, instruction))


class LatentScore(nn.Module):
    """``(b, n, d)`` latents + ``(b, d_text)`` instruction -> ``(b,)`` value logits (see the module docstring)."""

    def __init__(self, config: ScoreConfig, *, latent_dim: int, tokens: int, text_dim: int) -> None:
        super().__init__()
        self.latent_in = nn.Linear(latent_dim, config.dim)
        self.text_in = nn.Linear(text_dim, config.dim)
        self.pos = learned_embedding(tokens + 1, config.dim)
        self.transformer = Transformer(config.dim, config.depth, config.heads, 4.0)  # ends in a layer norm
        self.out = nn.Linear(config.dim, 1)
        self.apply(init_weights)

    def forward(self, latents: Tensor, instruction: Tensor) -> Tensor:
        x = torch.cat([self.text_in(instruction)[:, None], self.latent_in(latents)], dim=1) + self.pos
        return self.out(self.transformer(x)[:, 0])[:, 0]
