"""Target encoder: future frames in, the latents the world model must predict out (never a gradient).

Two kinds (``TargetConfig.kind``):
- ``ema``: an exponential moving average of the student's vision encoder, updated after each optimizer step;
- ``frozen``: a fixed encoder loaded from a safetensors file (e.g. one pretrained on the video set), or drawn
  from a seed. Its weights are a *reference* in the config, not part of the policy checkpoint.

Each frame (and each camera view) is encoded on its own, so the latent of frame ``t`` cannot depend on frames
after ``t`` (the official implementation encodes the clip jointly, so its context latents see the future).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.nn.config import TargetConfig, VisionConfig
from vlajepa.nn.vision import VisionEncoder, build_vision_encoder


class TargetEncoderError(RuntimeError):
    """The frozen encoder's weights file is missing, corrupt or does not fit the configured architecture."""


class TargetEncoder(nn.Module):
    """Per-frame encoder of future clips: ``v`` views of ``(b, T, 3, H, W)`` -> ``(b, T, v*N, d)``."""

    def __init__(self, encoder: nn.Module, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.encoder = encoder
        self.encoder.requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def tokens_per_view(self) -> int:
        return self.encoder.num_patches

    @torch.no_grad()
    def forward(self, clips: Sequence[Tensor]) -> Tensor:
        """``clips``: one ``(b, T, 3, H, W)`` tensor per camera, in camera order."""
        stacked = torch.stack(list(clips), dim=2)  # (b, t, v, 3, h, w)
        b, t, v = stacked.shape[:3]
        frames = rearrange(stacked, "b t v c h w -> (b t v) c h w")
        latents = self.encoder(frames)  # ((b t v), n, d): every frame and view on its own
        return rearrange(latents, "(b t v) n d -> b t (v n) d", b=b, t=t, v=v)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float) -> None:
        """EMA step towards ``online`` (the student's vision encoder); only for the ``ema`` kind."""
        if self.kind != "ema":
            raise RuntimeError(f"update() is only defined for an EMA target, not {self.kind!r}")
        for target_param, online_param in zip(self.encoder.parameters(), online.parameters(), strict=True):
            target_param.lerp_(online_param.detach(), 1.0 - momentum)


def build_target_encoder(
    config: TargetConfig,
    student_vision: VisionEncoder,
    vision: VisionConfig,
    image_size: int,
    *,
    load_weights: bool = True,
) -> TargetEncoder:
    """EMA copy of ``student_vision``, or the frozen encoder ``config`` refers to.

    ``load_weights=False`` leaves a frozen encoder at its seeded initial weights instead of reading
    ``config.checkpoint`` (for acting, which never runs the target).
    """
    if config.kind == "ema":
        return TargetEncoder(copy.deepcopy(student_vision), "ema")
    architecture = config.vision or vision
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = build_vision_encoder(architecture, image_size)
    if config.checkpoint is not None and load_weights:
        load_encoder(encoder, config.checkpoint)
    return TargetEncoder(encoder.eval(), "frozen")


def save_encoder(encoder: VisionEncoder, path: str | Path) -> None:
    """Write an encoder's weights (atomically) for use as a frozen target (``target.checkpoint``)."""
    from safetensors.torch import save_file

    from vlajepa.io_utils import atomic_write

    tensors = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def load_encoder(encoder: VisionEncoder, path: str | Path, role: str = "frozen target encoder") -> None:
    """Load weights saved by :func:`save_encoder`; errors name the file and what the weights were for (``role``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise TargetEncoderError(f"{path}: {role} weights not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise TargetEncoderError(f"{path}: corrupt or truncated safetensors file ({err})") from err
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise TargetEncoderError(
            f"{path}: {role} weights do not fit the configured vision architecture ({err})"
        ) from err
