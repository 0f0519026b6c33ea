"""Small ViT: one RGB frame in, patch tokens out.

Strictly per frame: a batch of frames is a batch of independent images, so the same module serves as the
student's encoder of the current image and (as an EMA copy or a frozen model) as the target encoder of every
future frame.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from vlajepa.nn.config import VisionConfig
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in increasing order (12 -> [2, 2, 3])."""
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def stem_stages(patch_size: int, dim: int) -> tuple[list[int], list[int]]:
    """Strides (the prime factors of ``patch_size``) and output widths (doubling up to ``dim``, at least 8) of the
    convolutional stems' stages."""
    factors = prime_factors(patch_size)
    return factors, [max(dim // 2 ** (len(factors) - 1 - i), 8) for i in range(len(factors))]


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``(b, c, h, w)`` at each position (no statistics shared across pixels)."""

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(super().forward(rearrange(x, "b c h w -> b h w c")), "b h w c -> b c h w")


def conv_stem(patch_size: int, dim: int) -> nn.Sequential:
    """Non-overlapping convolutions (kernel = stride = each prime factor of ``patch_size``) from 3 to ``dim``
    channels, widths doubling up to ``dim``: the output at a patch is a function of that patch's pixels only,
    like a linear patch embedding, so masked-patch pretraining stays leak-free; the nonlinear stem is what
    "early convolutions" ViTs use to train well from small data.
    """
    factors, widths = stem_stages(patch_size, dim)
    layers: list[nn.Module] = []
    channels = 3
    for i, (factor, width) in enumerate(zip(factors, widths, strict=True)):
        layers.append(nn.Conv2d(channels, width, kernel_size=factor, stride=factor))
        if i < len(factors) - 1:
            layers += [ChannelNorm(width), nn.GELU()]
        channels = width
    return nn.Sequential(*layers)


class ResidualConv(nn.Module):
    """``x + conv3x3(gelu(norm(x)))``: a pre-norm residual block that keeps the resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ChannelNorm(channels), nn.GELU(), nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def cnn_stem(patch_size: int, dim: int) -> nn.Sequential:
    """Overlapping strided convolutions, one per prime factor ``f`` of ``patch_size`` (kernel ``f + 2``, stride
    ``f``, padding 1: exactly ``1/f`` of the resolution), each but the last followed by a residual 3x3 block; widths
    double up to ``dim``. Same output grid as :func:`conv_stem`, but receptive fields overlap across patches.
    """
    factors, widths = stem_stages(patch_size, dim)
    layers: list[nn.Module] = []
    channels = 3
    for i, (factor, width) in enumerate(zip(factors, widths, strict=True)):
        layers.append(nn.Conv2d(channels, width, kernel_size=factor + 2, stride=factor, padding=1))
        if i < len(factors) - 1:
            layers.append(ResidualConv(width))
        channels = width
    return nn.Sequential(*layers)


def build_stem(config: VisionConfig) -> nn.Module:
    """The patch embedding named by ``config.stem``: ``(b, 3, H, W) -> (b, dim, H / patch, W / patch)``."""
    if config.stem == "conv":
        return conv_stem(config.patch_size, config.dim)
    if config.stem == "cnn":
        return cnn_stem(config.patch_size, config.dim)
    return nn.Conv2d(3, config.dim, kernel_size=config.patch_size, stride=config.patch_size)


class VisionEncoder(nn.Module):
    """ViT over ``(b, 3, H, W)`` images in ``[0, 1]``, returning ``(b, N, dim)`` layer-normed patch tokens."""

    def __init__(self, config: VisionConfig, image_size: int) -> None:
        super().__init__()
        if image_size % config.patch_size:
            raise ValueError(f"patch_size {config.patch_size} does not divide image_size {image_size}")
        self.image_size = image_size
        self.dim = config.dim
        self.num_patches = (image_size // config.patch_size) ** 2
        self.patch_embed = build_stem(config)
        self.pos_embed = learned_embedding(self.num_patches, config.dim)
        self.transformer = Transformer(config.dim, config.depth, config.heads, config.mlp_ratio)
        self.apply(init_weights)

    def forward(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        """Patch tokens ``(b, N, d)``; with ``keep`` ``(b, n_keep)`` patch indices, only those ``(b, n_keep, d)``.

        ``keep`` drops the other patches *before* the transformer (masked-context encoding for
        :mod:`vlajepa.train.encoder_pretrain`), so the kept tokens never see the dropped ones.
        """
        if images.shape[-3:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"expected images (b, 3, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        x = self.patch_embed(images * 2.0 - 1.0)  # (b, d, h', w'); [0, 1] -> [-1, 1]
        x = rearrange(x, "b d h w -> b (h w) d") + self.pos_embed
        if keep is not None:
            x = torch.gather(x, 1, repeat(keep, "b n -> b n d", d=x.shape[-1]))  # (b, n_keep, d)
        return self.transformer(x)


def build_vision_encoder(config: VisionConfig, image_size: int) -> nn.Module:
    """The encoder ``config.backbone`` names: ``(b, 3, H, W)`` images in ``[0, 1]`` -> ``(b, N, dim)`` tokens, with
    ``dim`` and ``num_patches`` attributes."""
    if config.backbone == "efficientnet_lite0":
        from vlajepa.nn.efficientnet import PretrainedVisionEncoder

        return PretrainedVisionEncoder(image_size, config.feature_stride, config.freeze)
    return VisionEncoder(config, image_size)
