"""Small ViT: one RGB frame in, patch tokens out.

Strictly per frame: a batch of frames is a batch of independent images, so the same module serves as the
student's encoder of the current image and (as an EMA copy or a frozen model) as the target encoder of every
future frame.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from vlajepa.config import VisionConfig
from vlajepa.models.transformer import Transformer, init_weights, learned_embedding


class VisionEncoder(nn.Module):
    """ViT over ``(b, 3, H, W)`` images in ``[0, 1]``, returning ``(b, N, dim)`` layer-normed patch tokens."""

    def __init__(self, config: VisionConfig, image_size: int) -> None:
        super().__init__()
        if image_size % config.patch_size:
            raise ValueError(f"patch_size {config.patch_size} does not divide image_size {image_size}")
        self.image_size = image_size
        self.dim = config.dim
        self.num_patches = (image_size // config.patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, config.dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.pos_embed = learned_embedding(self.num_patches, config.dim)
        self.transformer = Transformer(config.dim, config.depth, config.heads, config.mlp_ratio)
        self.apply(init_weights)

    def forward(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        """Patch tokens ``(b, N, d)``; with ``keep`` ``(b, n_keep)`` patch indices, only those ``(b, n_keep, d)``.

        ``keep`` drops the other patches *before* the transformer (masked-context encoding for
        :mod:`vlajepa.models.encoder_pretrain`), so the kept tokens never see the dropped ones.
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
