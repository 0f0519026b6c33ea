"""Configuration of the VLA-JEPA policy (type ``vla_jepa``): the student, the flow-matching action head and the
latent world model; ``use_world_model: false`` is plain behaviour cloning with the same student and head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlajepa.config import PolicyConfig
from vlajepa.nn.config import (
    ActionHeadConfig,
    HFVLMConfig,
    LanguageConfig,
    PredictorConfig,
    RegularizerConfig,
    TargetConfig,
    VisionConfig,
)


@dataclass(frozen=True)
class StudentConfig:
    """Fusion transformer over instruction, current-image and state tokens plus the learned action queries, or a
    Hugging Face VLM read out through added query tokens (``backbone: hf_vlm``)."""

    dim: int = 128  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    use_state: bool = True  # add a state token (a learned placeholder stands in when a batch has none)
    # native: the fusion transformer above (with `vision` and `language`); hf_vlm: the VLM of `hf_vlm`, whose query
    # tokens' last hidden states are projected to `dim` (depth, heads, mlp_ratio and use_state are then unused: the
    # VLM reads no state, the action head does)
    backbone: Literal["native", "hf_vlm"] = "native"
    hf_vlm: HFVLMConfig = field(default_factory=HFVLMConfig)  # hf_vlm only


@dataclass(frozen=True)
class VLAJEPAConfig(PolicyConfig):
    """The whole VLA-JEPA model. Inherits the observation/action interface of :class:`~vlajepa.config.PolicyConfig`
    (cameras, image size, state and action widths, chunk size, and the clip ``t, t+s, ..., t+(T-1)s`` whose future
    frames are the world model's targets)."""

    type = "vla_jepa"

    num_latent_action_tokens: int = 2  # K: latent-action tokens per future step (K * (T-1) queries in all)
    num_embodied_tokens: int = 4  # M: embodied-action queries read by the action head
    use_world_model: bool = True  # False: plain behaviour cloning (student + action head only)
    wm_weight: float = 1.0  # beta: weight of the world-model loss on robot batches (video batches: weight 1)
    reg_weight: float = 0.0  # lambda: weight of the anti-collapse regularizer (0: off)
    vision: VisionConfig = field(default_factory=VisionConfig)  # student vision encoder (and EMA target)
    language: LanguageConfig = field(default_factory=LanguageConfig)  # instruction encoder
    student: StudentConfig = field(default_factory=StudentConfig)  # fusion transformer
    target: TargetConfig = field(default_factory=TargetConfig)  # target encoder of the world model
    predictor: PredictorConfig = field(default_factory=PredictorConfig)  # latent world model
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)  # flow-matching action head
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)  # anti-collapse term

    @property
    def uses_state(self) -> bool:
        return self.student.use_state or self.action_head.use_state

    @property
    def uses_future_frames(self) -> bool:
        return self.use_world_model

    def problems(self) -> list[str]:
        found = super().problems()
        hf = self.student.backbone == "hf_vlm"
        native_vision = None if hf else self.vision  # the hf_vlm student has its own vision tower
        for name, sub in (("vision", native_vision), ("target.vision", self.target.vision)):
            if sub is not None:
                found += _vision_problems(name, sub, self.image_size)
        if hf and self.student.use_state:
            found.append("student.use_state must be false with student.backbone=hf_vlm (the action head reads it)")
        if hf and self.target.kind == "ema":
            found.append("target.kind=ema copies the native student's vision encoder; with hf_vlm use vjepa2/frozen")
        if self.student.hf_vlm.lora_rank < 0:
            found.append(f"student.hf_vlm.lora_rank={self.student.hf_vlm.lora_rank} must be >= 0")
        for name in ("student", "predictor", "action_head"):
            sub = getattr(self, name)
            if sub.dim % sub.heads:
                found.append(f"{name}.heads={sub.heads} does not divide {name}.dim={sub.dim}")
        if self.language.kind == "tiny" and self.language.dim % self.language.heads:
            found.append(f"language.heads={self.language.heads} does not divide language.dim")
        if self.use_world_model and self.clip_length < 2:
            found.append(f"clip_length={self.clip_length}: the world model needs at least 2 frames")
        if self.predictor.rollout_steps > self.clip_length - 1:
            found.append(f"predictor.rollout_steps={self.predictor.rollout_steps} > clip_length - 1")
        if not 0.0 <= self.predictor.context_dropout <= 1.0:
            found.append(f"predictor.context_dropout={self.predictor.context_dropout} must be in [0, 1]")
        side = self.image_size // token_size(self.target.vision or self.vision)
        if self.target.kind == "vjepa2":  # its patch size lives in its own config: the grid is checked when built
            side = self.predictor.latent_pool
        if self.predictor.latent_pool < 1 or side % self.predictor.latent_pool:
            found.append(
                f"predictor.latent_pool={self.predictor.latent_pool} must be >= 1 and divide the target's token "
                f"grid side {side}"
            )
        if self.target.kind == "ema" and self.target.vision is not None:
            found.append("target.vision must be null for an EMA target (it copies the student's encoder)")
        for name in ("num_latent_action_tokens", "num_embodied_tokens"):
            if getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.action_head.loss_samples < 1:
            found.append(f"action_head.loss_samples={self.action_head.loss_samples} must be >= 1")
        if self.wm_weight < 0 or self.reg_weight < 0:
            found.append("wm_weight and reg_weight must be >= 0")
        return found

    @property
    def reads_cached_features(self) -> bool:
        """Whether the student's frozen vision encoder is the frozen target's encoder too (a pretrained backbone from
        its package, with no other weights file): then the target's latents of the current frame, cached once per
        dataset, are the student's vision tokens."""
        frozen_pretrained = self.vision.backbone != "vit" and self.vision.freeze == "all"
        if not self.use_world_model:
            return frozen_pretrained  # the trainer caches the student's own frozen encoder
        target = self.target
        same = target.kind == "frozen" and target.checkpoint is None and target.vision in (None, self.vision)
        return frozen_pretrained and same


def token_size(vision: VisionConfig) -> int:
    """Pixels per side of one token of the encoder ``vision`` describes."""
    return vision.patch_size if vision.backbone == "vit" else vision.feature_stride


def _vision_problems(name: str, vision: VisionConfig, image_size: int) -> list[str]:
    found = []
    if vision.backbone == "vit":
        if image_size % vision.patch_size:
            found.append(f"{name}.patch_size={vision.patch_size} does not divide image_size={image_size}")
        if vision.dim % vision.heads:
            found.append(f"{name}.heads={vision.heads} does not divide {name}.dim={vision.dim}")
        if vision.freeze != "none":
            found.append(f"{name}.freeze={vision.freeze!r}: only a pretrained backbone can be frozen")
    else:
        if vision.feature_stride not in (8, 16):
            found.append(f"{name}.feature_stride={vision.feature_stride} must be 8 or 16")
        elif image_size % vision.feature_stride:
            found.append(f"{name}.feature_stride={vision.feature_stride} does not divide image_size={image_size}")
    return found
