"""LAPA's latent action model (arXiv 2410.11758, "latent action quantization"): discrete latent actions from frame
pairs, learned by reconstructing the later frame in pixels.

- **Encoder** (spatio-temporal, as LAPA's C-ViViT-style model): patches of ``o_t`` and ``o_{t+H}`` are embedded,
  a spatial transformer attends within each frame, then a temporal transformer attends, at each patch position,
  across the two frames with a causal mask (``o_t``'s tokens do not see ``o_{t+H}``).
- **Latent**: each frame's encoding is projected to ``code_dim`` and pooled to ``num_tokens`` tokens (a strided
  convolution and an average pool over the patch grid; LAPA uses a convolution stack sized for its 256 px input);
  the latent is the *difference* of the two frames' pooled encodings, quantized by :class:`~vlajepa.nn.nsvq.NSVQ`.
- **Decoder**: ``o_t``'s patch embeddings (stop-gradient, as LAPA) go through blocks of self-attention over the
  patches and cross-attention to the quantized latent tokens, and out to pixels of ``o_{t+H}``; the loss is the
  mean squared pixel error. With ``residual`` (the default; LAPA predicts pixels directly) the decoder predicts
  ``o_{t+H} - o_t`` from a zero-initialised output layer, so it starts at the copy-``o_t`` baseline and the codes
  only have to explain the change, which a CPU-sized run can learn in minutes.

The encoder sees the future frame: its codes can carry anything that changes between the frames (camera motion,
lighting, other agents), which is the leakage VLA-JEPA avoids and what ``benchmarks/probe_lapa.py`` measures.
Files: ``lam_config.json`` (:class:`~vlajepa.policies.lapa.configuration.LAMConfig`) and ``lam.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vlajepa.checkpoint import CheckpointError, load_safetensors, save_safetensors
from vlajepa.config import ConfigError
from vlajepa.nn.nsvq import NSVQ
from vlajepa.nn.transformer import MLP, Attention, Block, init_weights, learned_embedding
from vlajepa.policies.lapa.configuration import LAM_CONFIG_FILE, LAM_WEIGHTS_FILE, LAMConfig


@dataclass
class LAMOutput:
    """What :meth:`LatentActionModel.forward` returns for a batch of frame pairs."""

    loss: Tensor  # (): mean squared pixel error of the reconstruction over valid pairs
    reconstruction: Tensor  # (b, 3, S, S): predicted o_{t+H}
    codes: Tensor  # (b, num_tokens) int64: codebook indices of the latent action
    perplexity: Tensor  # (): of the batch's codes
    copy_loss: Tensor  # (): the same error for the copy-o_t prediction (the baseline a useful latent must beat)


class CrossBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to a context, then an MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm_cross, self.cross = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, mlp_ratio)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross(self.norm_cross(x), context=context)
        return x + self.mlp(self.norm2(x))


class LatentActionModel(nn.Module):
    """Frame pairs ``(o_t, o_{t+H})`` in, NSVQ codes and the reconstruction of ``o_{t+H}`` out."""

    def __init__(self, config: LAMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.grid = c.image_size // c.patch_size
        patch_pixels = 3 * c.patch_size**2
        self.patch_embed = nn.Sequential(
            nn.LayerNorm(patch_pixels), nn.Linear(patch_pixels, c.dim), nn.LayerNorm(c.dim)
        )
        self.spatial_pos = learned_embedding(self.grid**2, c.dim)
        self.frame_embed = learned_embedding(2, c.dim)
        self.spatial = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.spatial_depth))
        self.temporal = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.temporal_depth))
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.register_buffer("causal", torch.tensor([[True, False], [True, True]]), persistent=False)
        self.to_code = nn.Linear(c.dim, c.code_dim)
        self.pool_conv = nn.Conv2d(c.code_dim, c.code_dim, kernel_size=3, stride=2 if self.grid >= 4 else 1, padding=1)
        self.quantizer = NSVQ(c.codebook_size, c.code_dim)
        self.from_code = nn.Linear(c.code_dim, c.dim)
        self.code_pos = learned_embedding(c.num_tokens, c.dim)
        self.decoder_pos = learned_embedding(self.grid**2, c.dim)
        self.decoder = nn.ModuleList(CrossBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.to_pixels = nn.Linear(c.dim, patch_pixels)
        self.apply(init_weights)
        if c.residual:  # start at the copy-o_t prediction
            nn.init.zeros_(self.to_pixels.weight)
            nn.init.zeros_(self.to_pixels.bias)

    # ------------------------------------------------------------------ parts

    def patches(self, frames: Tensor) -> Tensor:
        """Embedded patches ``(b, n, d)`` of frames ``(b, 3, S, S)``."""
        p = self.config.patch_size
        return self.patch_embed(rearrange(frames, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p))

    def encode(self, first: Tensor, last: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encodings ``(b, n, d)`` of the two frames (the first one's depends on ``first`` only) and the first
        frame's patch embeddings ``(b, n, d)``."""
        size = self.config.image_size
        for name, frames in (("o_t", first), ("o_t+H", last)):
            if frames.shape[-3:] != (3, size, size):
                raise ValueError(f"{name}: expected frames (b, 3, {size}, {size}), got {tuple(frames.shape)}")
        embedded = torch.stack([self.patches(first), self.patches(last)], dim=1)  # (b, 2, n, d)
        x = embedded + self.spatial_pos[None, None] + self.frame_embed[None, :, None]
        b = x.shape[0]
        x = rearrange(x, "b t n d -> (b t) n d")
        for block in self.spatial:
            x = block(x)
        x = rearrange(x, "(b t) n d -> (b n) t d", b=b)
        for block in self.temporal:
            x = block(x, self.causal)
        x = rearrange(self.encoder_norm(x), "(b n) t d -> b t n d", b=b)
        return x[:, 0], x[:, 1], embedded[:, 0]

    def pool(self, tokens: Tensor) -> Tensor:
        """``(b, n, d)`` -> ``(b, num_tokens, code_dim)``: project, convolve and average-pool over the patch grid."""
        x = rearrange(self.to_code(tokens), "b (h w) c -> b c h w", h=self.grid)
        x = F.adaptive_avg_pool2d(F.gelu(self.pool_conv(x)), self.config.token_grid)
        return rearrange(x, "b c h w -> b (h w) c")

    def latent(self, first: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        """The unquantized latent action ``(b, num_tokens, code_dim)`` and ``o_t``'s patch embeddings."""
        encoded_first, encoded_last, embedded_first = self.encode(first, last)
        return self.pool(encoded_last) - self.pool(encoded_first), embedded_first

    def decode(self, first_patches: Tensor, quantized: Tensor, first: Tensor) -> Tensor:
        """The predicted ``o_{t+H}`` ``(b, 3, S, S)`` from ``o_t``'s patch embeddings and the quantized latent."""
        context = self.from_code(quantized) + self.code_pos
        x = first_patches + self.decoder_pos
        for block in self.decoder:
            x = block(x, context)
        p = self.config.patch_size
        pixels = rearrange(self.to_pixels(self.decoder_norm(x)), "b (h w) (c p1 p2) -> b c (h p1) (w p2)",
                           h=self.grid, p1=p, p2=p)  # fmt: skip
        return first + pixels if self.config.residual else pixels

    # ------------------------------------------------------------------ use

    def forward(self, first: Tensor, last: Tensor, valid: Tensor | None = None) -> LAMOutput:
        """Reconstruction loss of ``last`` from ``first`` and the pair's latent action; ``valid`` ``(b,)`` bool
        leaves pairs out of the losses (e.g. a future frame past the episode end)."""
        latent, first_patches = self.latent(first, last)
        quantized = self.quantizer(latent)
        reconstruction = self.decode(first_patches.detach(), quantized.output, first)
        weights = torch.ones(first.shape[0], device=first.device) if valid is None else valid.to(first.dtype)
        denominator = weights.sum().clamp_min(1.0)
        loss = ((reconstruction - last).square().mean(dim=(1, 2, 3)) * weights).sum() / denominator
        copy_loss = ((first - last).square().mean(dim=(1, 2, 3)) * weights).sum() / denominator
        return LAMOutput(loss, reconstruction, quantized.indices, quantized.perplexity, copy_loss.detach())

    @torch.no_grad()
    def codes(self, first: Tensor, last: Tensor) -> Tensor:
        """Codebook indices ``(b, num_tokens)`` of the latent action of each pair (nearest entries; no noise)."""
        latent, _ = self.latent(first, last)
        return self.quantizer.nearest(latent.reshape(-1, latent.shape[-1])).reshape(latent.shape[:2])

    # ------------------------------------------------------------------ files

    def save(self, directory: str | Path) -> Path:
        """Write ``lam.safetensors`` then ``lam_config.json`` (its presence marks a complete set), atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(directory / LAM_WEIGHTS_FILE, self.state_dict())
        self.config.save_json(directory / LAM_CONFIG_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LatentActionModel:
        """A frozen model (eval mode, no gradients) from a folder written by :meth:`save`; errors name the file."""
        directory = Path(directory)
        model = cls(load_lam_config(directory))
        path = directory / LAM_WEIGHTS_FILE
        state = load_safetensors(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{path}: weights do not match {LAM_CONFIG_FILE} ({err})") from err
        return model.eval().requires_grad_(False)


def load_lam_config(directory: str | Path) -> LAMConfig:
    """The :class:`LAMConfig` of a latent action model folder; errors name the file."""
    path = Path(directory) / LAM_CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; not a latent action model folder (see `vlajepa train-lam`)")
    try:
        return LAMConfig.load_json(path)
    except ConfigError as err:
        raise CheckpointError(str(err)) from err
