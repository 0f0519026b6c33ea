"""The planning policy: the base policy proposes, the world model imagines, the instruction chooses.

Each planning step, from the current observation only:

1. the base policy samples ``N`` candidate chunks from its flow-matching head in one student pass (independent
   noise; candidate 0 is its deterministic chunk when ``include_policy_chunk``);
2. the world model encodes the current frame once and imagines, for every candidate in one batched rollout, the
   latents after the executed part of the chunk (``n_action_steps`` actions, ``n_action_steps / frame_stride``
   world-model steps);
3. the score rates each imagined outcome against the instruction; optional cross-entropy-method rounds resample
   chunks around the best ones in normalized action space;
4. the best candidate's first ``n_action_steps`` actions are executed, then the policy plans again.

Checkpoints hold the world model and the score only: the base policy is referenced by its directory
(``base_policy``) and the frozen encoder by its package and hash, as a VLA-JEPA checkpoint references a frozen
target. Training (``vlajepa train-planner``, :mod:`vlajepa.train.planner`) fits both on cached latents of
demonstrations and of the base policy's own rollouts; ``vlajepa train --planner`` trains them inside the base
policy's own run (:class:`PlannerHeads`), saving a planner beside each checkpoint whose ``base_policy`` is ``..``
(a relative ``base_policy`` is read relative to the planner's folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from vlajepa.checkpoint import CheckpointError
from vlajepa.config import ConfigError, PolicyConfig
from vlajepa.constants import ACTION, FUTURE_IS_PAD, FUTURE_LATENTS, FUTURE_VALUE, TASK, image_key
from vlajepa.data.windows import resize_frames, to_float_frames
from vlajepa.normalize import Normalizer
from vlajepa.policies.base import PreTrainedPolicy, load_policy
from vlajepa.policies.planning.configuration import PlannerConfig
from vlajepa.policies.planning.world_model import LatentScore, LatentWorldModel
from vlajepa.policies.protocol import Plan

# The observation/action interface the planner must share with its base policy.
SHARED_FIELDS = ("cameras", "image_size", "state_dim", "action_dim", "chunk_size", "frame_stride")


class PlannerPolicy(PreTrainedPolicy):
    """World-model action selection around a base policy (see the module docstring)."""

    config_class = PlannerConfig
    config: PlannerConfig

    def __init__(
        self,
        config: PlannerConfig,
        normalizer: Normalizer | None = None,
        *,
        n_action_steps: int | None = None,
        num_inference_steps: int | None = None,
        noise_scale: float | None = None,
        num_candidates: int | None = None,
        cem_iterations: int | None = None,
        seed: int = 0,
        base: PreTrainedPolicy | None = None,
        root: str | Path | None = None,
    ) -> None:
        """``base``: the proposing policy (default: loaded from ``config.base_policy``, relative to ``root`` when
        that path is relative; ``num_inference_steps`` goes to it); ``noise_scale``, ``num_candidates`` and
        ``cem_iterations`` override the config's ``candidate_noise_scale``, ``num_candidates`` and
        ``cem_iterations``."""
        overrides = {
            name: value
            for name, value in (
                ("candidate_noise_scale", noise_scale),
                ("num_candidates", num_candidates),
                ("cem_iterations", cem_iterations),
            )
            if value is not None
        }
        if overrides:
            config = config.replace(**overrides)  # validated again: a bad override names its field
        super().__init__(config, normalizer, n_action_steps=n_action_steps)
        if self.n_action_steps % config.frame_stride or self.n_action_steps // config.frame_stride > (
            config.world_model.max_steps
        ):
            raise ConfigError(
                f"n_action_steps={self.n_action_steps} must be a multiple of frame_stride={config.frame_stride} "
                f"and at most world_model.max_steps={config.world_model.max_steps} world-model steps"
            )
        if base is None:
            options = {} if num_inference_steps is None else {"num_inference_steps": num_inference_steps}
            path = Path(config.base_policy)
            if root is not None and not path.is_absolute():
                path = Path(root) / path
            try:
                base = load_policy(path, **options)
            except CheckpointError as err:
                raise CheckpointError(f"base_policy: the planner's base policy does not load ({err})") from err
        check_interface(config, base.config, "the base policy", f" ({config.base_policy})")
        self.base = base.eval().requires_grad_(False)
        if normalizer is None:
            self.set_normalizer(base.normalizer)
        self.world_model, self.score = build_world_model_and_score(config)
        self._generator = torch.Generator().manual_seed(seed)
        # A base policy that reads its current frame's features from a latent cache of the same frozen encoder gets
        # the world model's tokens of the frame instead of encoding it a second time.
        vision = getattr(base.config, "vision", None)
        encoder = config.world_model.encoder
        self._shares_encoder = (
            base.config.reads_cached_features
            and vision is not None
            and encoder.backbone != "vit"
            and (vision.backbone, vision.feature_stride, vision.freeze)
            == (encoder.backbone, encoder.feature_stride, "all")
        )

    @property
    def horizon_steps(self) -> int:
        """World-model steps imagined per candidate (the executed part of a chunk)."""
        return self.n_action_steps // self.config.frame_stride

    def train(self, mode: bool = True) -> PlannerPolicy:
        super().train(mode)
        self.base.eval()  # the base policy is frozen inside the planner
        return self

    # ------------------------------------------------------------------ files and optimizer

    @classmethod
    def checkpoint_init_kwargs(cls, config: PlannerConfig, directory: str | Path) -> dict[str, Any]:
        return {"root": directory}  # a relative base_policy (a co-trained planner's "..") is relative to it

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ("base.", "world_model.encoder.")

    def frozen_references(self) -> dict[str, Any]:
        return {"base_policy": self.config.base_policy, **encoder_reference(self.config)}

    def get_optim_params(self) -> dict[str, list[nn.Parameter]]:
        """The world model (its frozen encoder excluded) and the score; the base policy never trains here."""
        return trainable_groups(self.world_model, self.score)

    # ------------------------------------------------------------------ training

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """World-model and score losses on a batch of latent windows (:func:`planner_loss`)."""
        return planner_loss(self.config, self.world_model, self.score, batch)

    # ------------------------------------------------------------------ acting

    def reseed(self, seed: int) -> None:
        """Restart the candidate noise (and the base policy's own) from ``seed``."""
        self._generator.manual_seed(seed)
        self.base.reseed(seed)

    def get_rng_state(self) -> tuple[Tensor, Any]:
        """States of the candidate noise and the base policy's own (a server keeps one per connection)."""
        base = self.base.get_rng_state() if hasattr(self.base, "get_rng_state") else None
        return self._generator.get_state(), base

    def set_rng_state(self, state: tuple[Tensor, Any]) -> None:
        own, base = state
        self._generator.set_state(own)
        if base is not None:
            self.base.set_rng_state(base)

    @torch.no_grad()
    def evaluate_candidates(self, current: Tensor, instruction: Tensor, candidates: Tensor) -> Tensor:
        """Scores ``(b, N)`` of normalized candidate chunks ``(b, N, H, A)``, imagined from the current latents
        ``(b, n, d)`` in one batched rollout over the executed ``n_action_steps`` actions."""
        n = candidates.shape[1]
        first = repeat(current, "b m d -> (b k) m d", k=n)
        text = repeat(instruction, "b d -> (b k) d", k=n)
        actions = rearrange(candidates[:, :, : self.n_action_steps], "b k h a -> (b k) h a")
        imagined = self.world_model.imagine(first, actions, text)  # (b*N, s, n, d)
        if self.config.score_on == "last":
            logits = self.score(imagined[:, -1], text)
        else:
            s = imagined.shape[1]
            logits = self.score(rearrange(imagined, "b s m d -> (b s) m d"), repeat(text, "b d -> (b s) d", s=s))
            logits = rearrange(logits, "(b s) -> b s", s=s).mean(1)
        return rearrange(logits, "(b k) -> b k", k=n)

    @torch.no_grad()
    def plan_batch(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """Normalized candidates ``(b, N, H, A)`` and their scores ``(b, N)`` for a preprocessed batch.

        Reads the current images, state and instruction only (the base policy's proposal and the world model's
        encoding of the current frame); nothing of the future."""
        config = self.config
        tokens = self.world_model.frame_tokens([batch[image_key(camera)] for camera in config.cameras])
        proposal_batch = {**batch, FUTURE_LATENTS: tokens[:, None]} if self._shares_encoder else batch
        candidates = self.base.sample_candidates(
            proposal_batch,
            config.num_candidates,
            noise_scale=config.candidate_noise_scale,
            include_deterministic=config.include_policy_chunk,
            generator=self._generator,
        )
        current = self.world_model.latents_from_tokens(tokens)
        instruction = self.world_model.instruction(batch[TASK])
        scores = self.evaluate_candidates(current, instruction, candidates)
        for _ in range(config.cem_iterations):
            candidates = self._cem_resample(candidates, scores)
            scores = self.evaluate_candidates(current, instruction, candidates)
        return candidates, scores

    def _cem_resample(self, candidates: Tensor, scores: Tensor) -> Tensor:
        """New candidates drawn around the elites' mean and spread; the best candidate so far is kept as the first."""
        config = self.config
        order = scores.argsort(dim=1, descending=True)
        index = order[:, : config.cem_elites, None, None].expand(-1, -1, *candidates.shape[2:])
        elites = candidates.gather(1, index)  # (b, e, H, A)
        mean = elites.mean(1, keepdim=True)
        std = elites.std(1, keepdim=True, unbiased=False).clamp_min(config.cem_min_std)
        noise = torch.randn(candidates.shape, generator=self._generator).to(candidates.device)
        fresh = mean + std * noise
        return torch.cat([elites[:, :1], fresh[:, 1:]], dim=1)

    def sample_actions(self, batch: Mapping[str, Any]) -> Tensor:
        candidates, scores = self.plan_batch(batch)
        best = scores.argmax(dim=1)
        return candidates[torch.arange(len(best), device=best.device), best]

    @torch.inference_mode()
    def plan(self, observation: dict[str, Any]) -> Plan:
        """Every candidate (un-normalized, executed part only), its score and the choice, for one observation."""
        batch = self.processor.preprocess([observation], self.device)
        candidates, scores = self.plan_batch(batch)
        executed = self.processor.postprocess(candidates[0, :, : self.n_action_steps])
        score = scores[0].float().cpu().numpy()
        return Plan(candidates=executed, scores=score, best=int(np.argmax(score)))

    @torch.inference_mode()
    def score_frame(self, image: np.ndarray, instruction: str) -> float:
        """The learned score (a value in ``[0, 1]``) of one camera frame ``uint8 (H, W, 3)`` under ``instruction``:
        how close that scene is to finishing it (one-camera planners)."""
        if len(self.config.cameras) != 1:
            raise ValueError(f"score_frame takes one camera image; this planner reads {len(self.config.cameras)}")
        frames = resize_frames(to_float_frames(np.asarray(image)[None]), self.config.image_size).to(self.device)
        latents = self.world_model.encode([frames])
        return float(torch.sigmoid(self.score(latents, self.world_model.instruction([instruction])))[0])


def check_interface(config: PlannerConfig, base: PolicyConfig, owner: str, detail: str = "") -> None:
    """ConfigError naming the first observation/action field (:data:`SHARED_FIELDS`) where the planner's config
    differs from its base policy's config ``base`` (``owner`` names that policy in the message)."""
    for name in SHARED_FIELDS:
        if getattr(base, name) != getattr(config, name):
            raise ConfigError(
                f"planner.{name}={getattr(config, name)!r} differs from {owner}'s {getattr(base, name)!r}{detail}"
            )


def build_world_model_and_score(config: PlannerConfig) -> tuple[LatentWorldModel, LatentScore]:
    """The planner's world model (with its frozen encoder) and score, as the config describes them."""
    world_model = LatentWorldModel(
        config.world_model,
        action_dim=config.action_dim,
        frame_stride=config.frame_stride,
        image_size=config.image_size,
        views=len(config.cameras),
    )
    score = LatentScore(
        config.score,
        latent_dim=world_model.latent_dim,
        tokens=world_model.tokens_per_frame,
        text_dim=world_model.text_dim,
    )
    return world_model, score


def encoder_reference(config: PlannerConfig) -> dict[str, Any]:
    """How a planner checkpoint names its frozen encoder: the weights' package and hash, or a ViT's seed."""
    encoder = config.world_model.encoder
    if encoder.backbone == "vit":
        return {"world_model.encoder": {"seed": config.world_model.encoder_seed}}
    from vlajepa.nn import efficientnet

    return {"world_model.encoder": {"package": efficientnet.PACKAGE, "sha256": efficientnet.WEIGHTS_SHA256}}


def trainable_groups(world_model: LatentWorldModel, score: LatentScore) -> dict[str, list[nn.Parameter]]:
    """Optimizer groups of the planner: the world model without its frozen encoder, and the score."""
    trainable = [p for name, p in world_model.named_parameters() if not name.startswith("encoder.") and p.requires_grad]
    return {"world_model": trainable, "score": [p for p in score.parameters() if p.requires_grad]}


class PlannerHeads(nn.Module):
    """The planner's trainable part without its base policy: the world model and the score, with the planner's
    parameter names (``world_model.*``, ``score.*``), so that a policy's training run can train them beside the
    policy (``vlajepa train --planner``) and save them as a planner checkpoint of that run's own checkpoint."""

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.config = config
        self.world_model, self.score = build_world_model_and_score(config)

    def train(self, mode: bool = True) -> PlannerHeads:
        super().train(mode)
        self.world_model.encoder.eval()  # frozen
        return self

    def get_optim_params(self) -> dict[str, list[nn.Parameter]]:
        return trainable_groups(self.world_model, self.score)

    def frozen_references(self) -> dict[str, Any]:
        return encoder_reference(self.config)

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """What a planner checkpoint stores of these modules (the frozen encoder is a reference)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("world_model.encoder.")}

    def load_checkpoint_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.load_state_dict(dict(state), strict=False)  # the frozen encoder's weights are not in it
        missing = sorted(set(self.checkpoint_state_dict()) - set(state))
        if missing:
            raise ValueError(f"{len(missing)} missing weights (e.g. {missing[0]!r})")

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        return planner_loss(self.config, self.world_model, self.score, batch)


def planner_loss(
    config: PlannerConfig, world_model: LatentWorldModel, score: LatentScore, batch: Mapping[str, Any]
) -> tuple[Tensor, dict[str, float]]:
    """World-model loss (teacher forcing + rollout) and score loss on a batch of latent windows.

    ``future.latents`` ``(b, T, n, d)``: standardized pooled latents of frames ``t, t+s, ...``; ``action``
    ``(b, (T-1) s, A)`` normalized with ``action_is_pad``; ``future_is_pad`` ``(b, T)``; ``future.value``
    ``(b, T)`` score targets; ``task``: the instructions (another task's when the value targets say so).
    """
    latents, actions = batch[FUTURE_LATENTS], batch[ACTION]
    is_pad = batch[FUTURE_IS_PAD]
    values = batch[FUTURE_VALUE]
    instruction = world_model.instruction(batch[TASK])
    valid = ~is_pad[:, 1:]  # (b, s): the predicted frames that exist
    conditions = world_model.conditions(actions, instruction)
    predicted = world_model.predictor(latents[:, :-1], conditions)
    wm_loss = _masked_mean(_step_distance(predicted, latents[:, 1:]), valid)
    total = wm_loss
    logs = {"loss/wm": wm_loss.item()}
    steps = min(config.world_model.predictor.rollout_steps, latents.shape[1] - 1)
    imagined = predicted[:, :1]
    if steps > 1:
        imagined = world_model.predictor.rollout(latents[:, 0], conditions[:, :steps], first_prediction=predicted[:, 0])
        rollout_loss = _masked_mean(_step_distance(imagined, latents[:, 1 : steps + 1]), valid[:, :steps])
        total = total + config.world_model.predictor.rollout_weight * rollout_loss
        logs["loss/wm_rollout"] = rollout_loss.item()
    # the score on real latents, and on imagined ones (detached: the score learns to read the world model's
    # outputs, the world model is not bent towards high scores)
    t = latents.shape[1]
    real = score(rearrange(latents, "b t n d -> (b t) n d"), repeat(instruction, "b d -> (b t) d", t=t))
    score_real = _masked_bce(real, values.reshape(-1), (~is_pad).reshape(-1))
    r = imagined.shape[1]
    dreamt = score(rearrange(imagined.detach(), "b r n d -> (b r) n d"), repeat(instruction, "b d -> (b r) d", r=r))
    score_imagined = _masked_bce(dreamt, values[:, 1 : r + 1].reshape(-1), valid[:, :r].reshape(-1))
    total = total + score_real + score_imagined
    logs |= {"loss/score": score_real.item(), "loss/score_imagined": score_imagined.item(), "loss": total.item()}
    return total, logs


def _step_distance(predicted: Tensor, target: Tensor) -> Tensor:
    """``(b, s)`` mean L1 distance per step."""
    return (predicted - target).abs().mean(dim=(2, 3))


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    weights = valid.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _masked_bce(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return _masked_mean(losses, valid)
