"""Transformer building blocks shared by every network: attention, MLP and a pre-norm block.

Masks are boolean with ``True`` meaning "may attend", shaped ``(n, m)`` or ``(b, n, m)``. No block mixes
samples of a batch (no batch norm), which the leakage tests rely on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, cross-attention otherwise."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``(b, h, m, d_head)`` of ``context``; reusable while the context is unchanged."""
        k, v = rearrange(self.to_kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        return k, v

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        keys_values: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        if keys_values is None:
            keys_values = self.keys_values(x if context is None else context)
        k, v = keys_values
        if mask is not None and mask.dim() == 3:
            mask = rearrange(mask, "b n m -> b 1 n m")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (b, h, n, d)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


class MLP(nn.Sequential):
    def __init__(self, dim: int, mlp_ratio: float) -> None:
        hidden = int(dim * mlp_ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention then MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block` with a final layer norm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights and zero biases (ViT convention); apply with ``model.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def learned_embedding(*shape: int) -> nn.Parameter:
    """A learned embedding table or query set, initialised like ViT position embeddings."""
    return nn.Parameter(torch.nn.init.trunc_normal_(torch.empty(*shape), std=0.02))
