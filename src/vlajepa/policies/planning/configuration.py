"""Configuration of the planning policy (type ``planner``): a base policy proposes candidate action chunks, an
action- and language-conditioned latent world model imagines each one's outcome, and a learned score picks the
candidate whose imagined outcome best fits the instruction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlajepa.config import PolicyConfig
from vlajepa.nn.config import LanguageConfig, PredictorConfig, VisionConfig


def _pretrained_frozen() -> VisionConfig:
    return VisionConfig(backbone="efficientnet_lite0", feature_stride=16, freeze="all")


@dataclass(frozen=True)
class WorldModelConfig:
    """``g(z_{<=t}, a_{t..t+s-1}, l) -> z_{t+s}``: latents of a frozen encoder, one step per ``frame_stride``
    actions, block-causal over steps (the :class:`~vlajepa.nn.predictor.Predictor`), conditioned per step on one
    token of the step's real (normalized) actions and one token of the instruction."""

    # the frozen encoder whose latents the world model predicts: the packaged ImageNet EfficientNet-Lite0 (its
    # weights are referenced by package and hash, never copied), or a ViT drawn from `encoder_seed` (tests)
    encoder: VisionConfig = field(default_factory=_pretrained_frozen)
    encoder_seed: int = 0  # vit encoders only: the seed of their (frozen, random) weights
    latent_pool: int = 2  # average-pool the encoder's token grid by this factor (6x6 -> 3x3 at 96 px, stride 16)
    predictor: PredictorConfig = field(
        default_factory=lambda: PredictorConfig(
            dim=128, depth=2, heads=4, mlp_ratio=2.0, residual=True, rollout_steps=2
        )
    )
    language: LanguageConfig = field(default_factory=LanguageConfig)  # frozen MiniLM; its mean token is one token
    max_steps: int = 2  # longest imagined horizon in world-model steps (training clips hold max_steps + 1 frames)


@dataclass(frozen=True)
class ScoreConfig:
    """``score(z, l)``: how close the latents ``z`` are to finishing the instruction ``l`` (a value in ``[0, 1]``).

    Trained as a Monte-Carlo value: ``discount ** (steps until success)`` for frames of successful episodes, 0 for
    frames of failed rollouts and for frames paired with another task's instruction."""

    dim: int = 96  # token width
    depth: int = 2  # transformer blocks over [instruction token, latent tokens]
    heads: int = 4  # attention heads; must divide dim
    discount: float = 0.97  # per environment step
    wrong_instruction_rate: float = 0.25  # share of training pairs whose instruction is another task's (label 0)


@dataclass(frozen=True)
class PlannerConfig(PolicyConfig):
    """World-model action selection around a base policy. The observation/action interface fields (cameras, image
    size, chunk size, frame stride, ...) are the base policy's; ``n_action_steps`` actions of the chosen chunk are
    executed before planning again, and must be a multiple of ``frame_stride`` (the world model's step)."""

    type = "planner"

    base_policy: str = ""  # checkpoint directory of the proposing policy (a reference, never copied)
    num_candidates: int = 16  # N: chunks imagined per planning step (the base policy's deterministic one included)
    include_policy_chunk: bool = True  # candidate 0 is the base policy's deterministic chunk (noise 0)
    candidate_noise_scale: float = 1.0  # flow-matching temperature of the other candidates
    cem_iterations: int = 0  # refine with this many cross-entropy-method rounds in normalized action space
    cem_elites: int = 4  # candidates whose mean and spread seed the next CEM round
    cem_min_std: float = 0.05  # floor of the CEM spread (normalized action units)
    score_on: Literal["last", "mean"] = "last"  # score the last imagined step, or the mean over imagined steps
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    @property
    def horizon_steps(self) -> int:
        """World-model steps imagined per candidate: the executed part of a chunk."""
        return self.n_action_steps // self.frame_stride

    def problems(self) -> list[str]:
        found = super().problems()
        if not self.base_policy:
            found.append("base_policy: the checkpoint directory of the proposing policy is required")
        if self.num_candidates < 1:
            found.append(f"num_candidates={self.num_candidates} must be >= 1")
        if not 0.0 <= self.candidate_noise_scale <= 1.0:
            found.append(f"candidate_noise_scale={self.candidate_noise_scale} must be in [0, 1]")
        if self.cem_iterations < 0:
            found.append(f"cem_iterations={self.cem_iterations} must be >= 0")
        if self.cem_iterations and not 1 <= self.cem_elites <= self.num_candidates:
            found.append(f"cem_elites={self.cem_elites} must be in [1, num_candidates={self.num_candidates}]")
        if self.cem_min_std < 0:
            found.append(f"cem_min_std={self.cem_min_std} must be >= 0")
        if self.n_action_steps % self.frame_stride:
            found.append(
                f"n_action_steps={self.n_action_steps} must be a multiple of frame_stride={self.frame_stride} "
                "(the world model imagines one step per frame_stride actions)"
            )
        elif not 1 <= self.horizon_steps <= self.world_model.max_steps:
            found.append(
                f"n_action_steps / frame_stride = {self.horizon_steps} world-model steps must be in "
                f"[1, world_model.max_steps={self.world_model.max_steps}]"
            )
        if self.world_model.latent_pool < 1:
            found.append(f"world_model.latent_pool={self.world_model.latent_pool} must be >= 1")
        if self.world_model.encoder.backbone != "vit" and self.world_model.encoder.freeze != "all":
            found.append("world_model.encoder.freeze must be 'all': the world model's latent space is frozen")
        if not 0.0 < self.score.discount <= 1.0:
            found.append(f"score.discount={self.score.discount} must be in (0, 1]")
        if not 0.0 <= self.score.wrong_instruction_rate < 1.0:
            found.append(f"score.wrong_instruction_rate={self.score.wrong_instruction_rate} must be in [0, 1)")
        return found
