"""Noise-substitution vector quantization (NSVQ; Vali & Bäckström, IEEE Access 2022), as LAPA's latent action
model uses it (arXiv 2410.11758).

A vector ``z`` is assigned to its nearest codebook entry ``q``. In training, instead of a straight-through copy,
the output is ``z + ||z - q|| * v / ||v||`` with ``v ~ N(0, I)``: the quantization error is simulated by noise of
the same magnitude, so gradients reach the encoder (through ``z``) and the codebook (through ``||z - q||``)
without a commitment or codebook loss. At inference the output is ``q`` itself, exactly a codebook entry.

The module counts how often each entry is chosen. :meth:`NSVQ.replace_dead_codes`, called every few steps early in
training, moves the entries used by fewer than a threshold share of the vectors since the last call onto perturbed
encoder outputs of the latest training batch. (The NSVQ reference implementation, and LAPA's, copy
live *codebook entries* plus tiny noise instead; starting a dead entry at a real encoder output puts it where the
data are, which matters with the few hundred steps a CPU run has.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Quantized:
    """What :class:`NSVQ` returns for ``z`` of shape ``(..., d)``."""

    output: Tensor  # (..., d): noise-substituted in training, the chosen codebook entries at inference
    indices: Tensor  # (...,) int64: index of the nearest codebook entry
    perplexity: Tensor  # (): exp(entropy) of the batch's code distribution (num_codes: uniform use, 1: one code)


class NSVQ(nn.Module):
    """A codebook of ``num_codes`` vectors of width ``dim``; see the module docstring."""

    def __init__(self, num_codes: int, dim: int) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes={num_codes} and dim={dim} must be >= 1")
        self.num_codes = num_codes
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))
        # Use counts since the last dead-code check (training state, not part of a checkpoint).
        self.register_buffer("usage", torch.zeros(num_codes, dtype=torch.long), persistent=False)
        self._recent: Tensor | None = None  # the latest training batch's vectors (candidates for dead codes)

    def nearest(self, flat: Tensor) -> Tensor:
        """Index ``(n,)`` of the codebook entry nearest (Euclidean) to each row of ``flat`` ``(n, d)``."""
        codebook = self.codebook.to(flat.dtype)
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.square().sum(1)[None]
        return distances.argmin(dim=1)

    def forward(self, z: Tensor) -> Quantized:
        flat = z.reshape(-1, z.shape[-1])
        indices = self.nearest(flat.detach())
        hard = self.codebook[indices].to(flat.dtype)  # (n, d)
        if self.training:
            noise = torch.randn_like(flat)
            scale = (flat - hard).norm(dim=1, keepdim=True) / noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
            output = flat + scale * noise
            with torch.no_grad():
                self.usage += torch.bincount(indices, minlength=self.num_codes)
                self._recent = flat.detach()
        else:
            output = hard
        share = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype) / max(1, len(indices))
        perplexity = torch.exp(-(share * torch.log(share.clamp_min(1e-12))).sum())
        return Quantized(output.reshape(z.shape), indices.reshape(z.shape[:-1]), perplexity.detach())

    def dead_codes(self, threshold: float) -> Tensor:
        """Indices of entries chosen by fewer than ``threshold`` of the vectors since the last check (all of them
        when nothing was counted)."""
        total = int(self.usage.sum())
        if total == 0:
            return torch.arange(self.num_codes, device=self.usage.device)
        return torch.nonzero(self.usage.float() / total < threshold).flatten()

    @torch.no_grad()
    def replace_dead_codes(self, threshold: float = 0.01, noise: float = 0.01) -> int:
        """Move dead entries (see :meth:`dead_codes`) onto random vectors of the latest training batch plus
        Gaussian noise of ``noise`` times their spread; reset the counts. Returns how many entries moved."""
        dead = self.dead_codes(threshold)
        candidates = self._recent
        replaced = 0
        if len(dead) and candidates is not None and len(candidates):
            pick = torch.randint(len(candidates), (len(dead),), device=candidates.device)
            spread = candidates.std(dim=0, keepdim=True).clamp_min(1e-6) if len(candidates) > 1 else 1.0
            fresh = candidates[pick] + noise * spread * torch.randn_like(candidates[pick])
            self.codebook.data[dead] = fresh.to(self.codebook.dtype)
            replaced = len(dead)
        self.usage.zero_()
        return replaced
