"""Tiny configurations of the paper-scale path (a Hugging Face VLM student and a V-JEPA 2 target) built from random
weights: no download, seconds on a CPU."""

from __future__ import annotations

from typing import Any

import torch

from helpers.models import tiny_config
from vlajepa.constants import ACTION, OBS_STATE
from vlajepa.nn.config import HFVLMConfig, TargetConfig, VJEPA2TargetConfig
from vlajepa.normalize import Normalizer
from vlajepa.policies.vla_jepa import StudentConfig, VLAJEPAConfig, VLAJEPAPolicy


def tiny_hf_config(
    family: str = "qwen3_vl",
    cameras: tuple[str, ...] = ("corner2",),
    vlm: dict | None = None,
    target: TargetConfig | None = None,
    **changes: Any,
) -> VLAJEPAConfig:
    """The tiny preset with a tiny random VLM student (``vlm``: HFVLMConfig fields) and a tiny V-JEPA 2 target."""
    return tiny_config(
        cameras=cameras,
        student=StudentConfig(dim=32, heads=2, use_state=False, backbone="hf_vlm",
                              hf_vlm=HFVLMConfig(family=family, **(vlm or {}))),  # fmt: skip
        target=target or TargetConfig(kind="vjepa2", vjepa2=VJEPA2TargetConfig(image_size=32)),
        **changes,
    )


def normalizer(config: VLAJEPAConfig) -> Normalizer:
    stats = {
        ACTION: {"min": [-1.0] * config.action_dim, "max": [1.0] * config.action_dim},
        OBS_STATE: {"mean": [0.0] * config.state_dim, "std": [1.0] * config.state_dim},
    }
    return Normalizer.from_stats(stats, {ACTION: "min_max", OBS_STATE: "mean_std"})


def hf_policy(config: VLAJEPAConfig, seed: int = 0, perturb: bool = True) -> VLAJEPAPolicy:
    """A fresh policy; ``perturb`` moves every weight off its initial value so that every input matters (the
    zero-initialised output layers of a fresh model would hide a dependence)."""
    torch.manual_seed(seed)
    policy = VLAJEPAPolicy(config, normalizer(config))
    if perturb:
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if not name.startswith("target."):  # a frozen target is rebuilt from its reference
                    p.add_(0.05 * torch.randn_like(p))
    return policy.eval()
