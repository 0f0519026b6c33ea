"""A frozen V-JEPA 2 encoder (transformers ``VJEPA2Model``) as the world model's target: the paper-scale target.

Every frame of the future clip, and every camera view, is encoded on its own: one frame is a one-frame video that
the patch embedding repeats to fill a tubelet. So the latents of frame ``t`` depend on frame ``t`` only, and the
leakage rule holds (the official implementation encodes tubelets of two frames jointly, so there a context latent
sees the next frame). Frames are resized to ``image_size`` and normalized with ImageNet statistics, as V-JEPA 2's
own video processor does. Only the encoder is kept; V-JEPA 2's own predictor is dropped.

Weights come from a local transformers folder (``model_dir``), a reference that policy checkpoints never copy, or
are drawn from ``seed`` for a random architecture of ``size`` (``tiny`` for tests; ``vitl`` for parameter counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vlajepa.nn.config import VJEPA2TargetConfig
from vlajepa.nn.target import TargetEncoder, TargetEncoderError

_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, V-JEPA 2's normalization
_STD = (0.229, 0.224, 0.225)


def vjepa2_architecture(size: str, image_size: int):
    """A ``VJEPA2Config``: ViT-L/16 as published (``vitl``) or a tiny one for tests (``tiny``)."""
    from transformers import VJEPA2Config

    if size == "vitl":
        return VJEPA2Config(crop_size=image_size)  # the library defaults are vjepa2-vitl-fpc64-256's
    return VJEPA2Config(
        crop_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        mlp_ratio=2.0,
        pred_hidden_size=16,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
    )


def write_tiny_vjepa2(directory: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """Write a tiny random ``VJEPA2Model`` as a transformers folder: what a real ``model_dir`` looks like."""
    from transformers import VJEPA2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VJEPA2Model(vjepa2_architecture("tiny", image_size))
    model.save_pretrained(directory)
    return Path(directory)


class VJEPA2Target(TargetEncoder):
    """Per-frame V-JEPA 2 encoder of future clips: ``v`` views of ``(b, T, 3, H, W)`` -> ``(b, T, v*N, d)``."""

    def __init__(self, config: VJEPA2TargetConfig, seed: int = 0, *, load_weights: bool = True) -> None:
        from transformers import AutoConfig, VJEPA2Model

        if config.model_dir is not None:
            folder = Path(config.model_dir).expanduser()
            if not (folder / "config.json").is_file():
                raise TargetEncoderError(f"{folder}: not a transformers V-JEPA 2 folder (no config.json)")
            architecture = AutoConfig.from_pretrained(folder)
            if architecture.model_type != "vjepa2":
                raise TargetEncoderError(f"{folder}: a {architecture.model_type!r} model, not V-JEPA 2")
        else:
            architecture = vjepa2_architecture(config.size, config.image_size)
        on_meta = torch.empty(0).device.type == "meta"
        if config.model_dir is None and config.size != "tiny" and not on_meta:
            raise TargetEncoderError(
                f"target.vjepa2.size={config.size!r} without model_dir: a random ViT-L target is of no use; set "
                "target.vjepa2.model_dir to a local V-JEPA 2 folder"
            )
        if config.model_dir is not None and load_weights and not on_meta:
            model = VJEPA2Model.from_pretrained(folder, dtype=torch.float32)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = VJEPA2Model(architecture)
        super().__init__(model.encoder.eval(), "frozen")  # the predictor is not used
        self.image_size = config.image_size
        self.patch = architecture.patch_size
        self.hidden = architecture.hidden_size
        if self.image_size % self.patch:
            raise TargetEncoderError(f"target.vjepa2.image_size={self.image_size} is not a multiple of the patch size")
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return self.hidden

    @property
    def tokens_per_view(self) -> int:
        return (self.image_size // self.patch) ** 2

    def train(self, mode: bool = True) -> VJEPA2Target:
        """Stays in eval mode (no dropout, no drop-path): a frozen target is a fixed function."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, clips: Sequence[Tensor]) -> Tensor:
        """``clips``: one ``(b, T, 3, H, W)`` tensor in ``[0, 1]`` per camera, in camera order."""
        stacked = torch.stack(list(clips), dim=2)  # (b, t, v, 3, h, w)
        b, t, v = stacked.shape[:3]
        frames = rearrange(stacked, "b t v c h w -> (b t v) c h w").float()
        if frames.shape[-2:] != (self.image_size, self.image_size):
            frames = F.interpolate(frames, size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False)  # fmt: skip
        frames = (frames - self.mean) / self.std
        latents = self.encoder(pixel_values_videos=frames[:, None]).last_hidden_state  # one-frame videos
        return rearrange(latents, "(b t v) n d -> b t (v n) d", b=b, t=t, v=v)
