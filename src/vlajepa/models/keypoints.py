"""Spatial-softmax keypoint tokens: where things are in the image, as explicit coordinates.

A small convolutional net (stride 4, translation-equivariant) scores every position of a feature map once per
keypoint channel; a softmax over positions turns each channel into an expected image coordinate ``(x, y)`` in
``[-1, 1]`` (Levine et al. 2016, the robomimic/Diffusion Policy image encoders). Each keypoint becomes one student
token: its coordinates embedded linearly plus a learned per-keypoint embedding.

Why the student has these besides the ViT's patch tokens: on MT10 the same behaviour cloning model and data score
about 80 % in distribution when the object and goal positions are given as state, and about 40 % from pixels
(``benchmarks/results/mt10_bc_privileged_id.md``). The policy has to read positions off the image and generalize
them from ten layouts per task. A feature detector shared across positions plus a coordinate read-out makes an
object's position a (nearly) linear function of where it appears, instead of something the patch transformer must
learn from position embeddings. Measured, it did not close the gap: 32 keypoints scored 40.0 % against 36.5 % without
(BC, 1200 steps, 200 episodes each, ``mt10_bc_keypoints_id.md``), inside the intervals; off by default.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.models.transformer import init_weights, learned_embedding
from vlajepa.models.vision import ResidualConv


def spatial_softmax(scores: Tensor, temperature: Tensor | float = 1.0) -> Tensor:
    """Expected coordinates ``(b, k, 2)`` (x, y in ``[-1, 1]``, pixel centres) of ``scores`` ``(b, k, h, w)``
    under a softmax over the ``h * w`` positions of each channel."""
    _, _, height, width = scores.shape
    weights = torch.softmax(rearrange(scores, "b k h w -> b k (h w)") / temperature, dim=-1)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=scores.device, dtype=scores.dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=scores.device, dtype=scores.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (h w, 2)
    return weights @ grid


class KeypointTokens(nn.Module):
    """``(b, 3, H, W)`` images in ``[0, 1]`` -> ``(b, K, dim)`` keypoint tokens (and their coordinates)."""

    def __init__(self, num_keypoints: int, dim: int, width: int = 32) -> None:
        super().__init__()
        if num_keypoints < 1:
            raise ValueError(f"num_keypoints must be positive, got {num_keypoints}")
        self.num_keypoints = num_keypoints
        self.scores = nn.Sequential(
            nn.Conv2d(3, width, kernel_size=5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1),
            ResidualConv(2 * width),
            nn.GELU(),
            nn.Conv2d(2 * width, num_keypoints, kernel_size=1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))  # learned sharpness of every channel's softmax
        self.coord_proj = nn.Linear(2, dim)
        self.keypoint_embed = learned_embedding(num_keypoints, dim)
        self.coord_proj.apply(init_weights)

    def coordinates(self, images: Tensor) -> Tensor:
        """Keypoint coordinates ``(b, K, 2)``, x and y in ``[-1, 1]``."""
        return spatial_softmax(self.scores(images * 2.0 - 1.0), self.log_temperature.exp())

    def forward(self, images: Tensor) -> Tensor:
        return self.coord_proj(self.coordinates(images)) + self.keypoint_embed
