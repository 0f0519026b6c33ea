"""Configuration of the VLA-JEPA policy (type ``vla_jepa``): the student, the flow-matching action head and the
latent world model; ``use_world_model: false`` is plain behaviour cloning with the same student and head."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlajepa.config import PolicyConfig
from vlajepa.nn.config import (
    ActionHeadConfig,
    LanguageConfig,
    PredictorConfig,
    RegularizerConfig,
    TargetConfig,
    VisionConfig,
)


@dataclass(frozen=True)
class StudentConfig:
    """Fusion transformer over instruction, current-image and state tokens plus the learned action queries."""

    dim: int = 128  # token width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of dim
    use_state: bool = True  # add a state token (a learned placeholder stands in when a batch has none)


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
        for name, sub in (("vision", self.vision), ("target.vision", self.target.vision)):
            if sub is not None and self.image_size % sub.patch_size:
                found.append(f"{name}.patch_size={sub.patch_size} does not divide image_size={self.image_size}")
        for name in ("vision", "student", "predictor", "action_head"):
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
        target_patch = (self.target.vision or self.vision).patch_size
        if self.predictor.latent_pool < 1 or (self.image_size // target_patch) % self.predictor.latent_pool:
            found.append(
                f"predictor.latent_pool={self.predictor.latent_pool} must be >= 1 and divide the target's patch "
                f"grid side {self.image_size // target_patch}"
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
