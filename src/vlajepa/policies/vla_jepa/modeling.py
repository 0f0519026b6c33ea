"""The VLA-JEPA policy: the student, the flow-matching action head and the latent world model, with their losses.

Training batch format (torch tensors, batch dimension first; built by :mod:`vlajepa.data.windows`):

- ``observation.images.<camera>``: float ``(b, 3, H, W)`` in ``[0, 1]``, the current frame (the student's only
  image);
- ``observation.state``: ``(b, S)`` normalized (optional: a learned placeholder stands in when absent);
- ``task``: ``list[str]`` of instructions;
- ``future.images.<camera>``: float ``(b, T, 3, H, W)``, frames ``t, t+s, ..., t+(T-1)s`` (the first is the
  current frame); read by the target encoder only, as targets of the world model;
- ``future.latents``: optional ``(b, T, v*N, d)``, the frozen target's latents of that clip computed ahead (a
  latent cache); used instead of ``future.images.*`` when present;
- ``future_is_pad``: bool ``(b, T)``, True for frames past the episode end (their predictions leave the loss);
- ``action``: ``(b, H, A)`` normalized, and ``action_is_pad``: bool ``(b, H)`` — robot batches only.

A robot batch (with ``action``) costs ``L_action + beta * L_wm (+ lambda * R)``; a video batch (no ``action``) costs
``L_wm (+ lambda * R)``; with ``use_world_model=False`` the policy is plain behaviour cloning.

Acting: one observation in (through the policy's :class:`~vlajepa.policies.processing.Processor`), an
un-normalized chunk of the first ``n_action_steps`` actions out. Flow-matching noise comes from the policy's own
generator, so ``reseed(seed)`` makes an episode's actions reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.constants import (
    ACTION,
    ACTION_IS_PAD,
    FUTURE_IS_PAD,
    FUTURE_LATENTS,
    OBS_STATE,
    TASK,
    future_image_key,
    image_key,
)
from vlajepa.nn.action_head import FlowMatchingActionHead
from vlajepa.nn.predictor import Predictor, pool_latents
from vlajepa.nn.regularizers import build_regularizer
from vlajepa.nn.target import TargetEncoder, build_target_encoder, load_encoder
from vlajepa.normalize import Normalizer
from vlajepa.policies.flow_policy import FlowPolicy
from vlajepa.policies.vla_jepa.configuration import VLAJEPAConfig
from vlajepa.policies.vla_jepa.student import Student, StudentOutput

logger = logging.getLogger(__name__)


class VLAJEPAPolicy(FlowPolicy):
    """VLA-JEPA (and BC with ``use_world_model=False``); ``forward(batch) -> (loss, logs)`` trains it,
    ``predict_action_chunk(observation)`` acts."""

    config_class = VLAJEPAConfig
    config: VLAJEPAConfig

    def __init__(
        self,
        config: VLAJEPAConfig,
        normalizer: Normalizer | None = None,
        *,
        n_action_steps: int | None = None,
        num_inference_steps: int | None = None,
        noise_scale: float = 1.0,
        seed: int = 0,
        load_target_weights: bool = True,
        load_backbone_weights: bool = True,
    ) -> None:
        """``num_inference_steps``: Euler steps per chunk (None: ``action_head.num_inference_steps``);
        ``noise_scale``: flow-matching sampling temperature in ``[0, 1]`` (0: deterministic chunks);
        ``load_target_weights=False``: do not read a frozen target's weights file (acting does not use the
        target; :meth:`from_pretrained` passes it when the file is not on this machine);
        ``load_backbone_weights=False``: build a Hugging Face VLM student from its folder's config without reading its
        weights (a checkpoint brings them)."""
        super().__init__(
            config,
            normalizer,
            n_action_steps=n_action_steps,
            num_inference_steps=num_inference_steps,
            noise_scale=noise_scale,
            seed=seed,
        )
        self.student = build_student(config, load_weights=load_backbone_weights)
        self.action_head = FlowMatchingActionHead(
            config.action_head, config.action_dim, config.chunk_size, config.state_dim, config.student.dim
        )
        self.target = None
        self.predictor = None
        if config.use_world_model:
            self.target = build_target(config, self.student, load_weights=load_target_weights)
            self.predictor = Predictor(
                config.predictor,
                latent_dim=self.target.dim,
                tokens_per_frame=len(config.cameras) * self.target.tokens_per_view // config.predictor.latent_pool**2,
                condition_dim=config.student.dim,
                conditions_per_step=config.num_latent_action_tokens,
                max_steps=config.clip_length - 1,
            )
        self.regularizer = build_regularizer(config.regularizer) if config.reg_weight > 0 else None
        # BC with a frozen pretrained vision encoder: a view of it the trainer may cache. It shares the encoder's
        # weights and is kept out of the module tree (__dict__), so the state dict does not list them twice.
        self.__dict__["_vision_cache_encoder"] = None

    @classmethod
    def checkpoint_init_kwargs(cls, config: VLAJEPAConfig, directory: str | Path) -> dict[str, Any]:
        """A frozen target is referenced by path, not copied; acting does not need it, so a policy moved to another
        machine (e.g. a robot's policy server) still loads. World-model losses would then use unloaded weights."""
        target = config.target
        missing = (
            config.use_world_model
            and target.kind == "frozen"
            and target.checkpoint is not None
            and not Path(target.checkpoint).is_file()
        )
        if missing:
            logger.warning(
                "%s: frozen target encoder %s not found; loaded without it (acting does not use the target)",
                directory,
                target.checkpoint,
            )
        kwargs: dict[str, Any] = {"load_target_weights": not missing}
        if config.student.backbone == "hf_vlm":
            kwargs["load_backbone_weights"] = False  # model.safetensors holds the trained VLM
        return kwargs

    # ------------------------------------------------------------------ inputs

    def encode(self, batch: Mapping[str, Any]) -> StudentOutput:
        """The student's outputs; a function of the current images, state and instruction only.

        With a frozen pretrained vision encoder that is also the frozen target (``reads_cached_features``)
        and cached latents in the batch, the current frame's tokens are read from the cache (frame 0 of the clip is
        the current frame, encoded on its own) instead of running the encoder again; later frames are never read.
        """
        state, task = batch.get(OBS_STATE), self._get(batch, TASK)  # video batches have no state: a placeholder
        if FUTURE_LATENTS in batch and self.config.reads_cached_features:
            current = batch[FUTURE_LATENTS][:, 0].float()  # (b, v*N, d)
            vision_tokens = rearrange(current, "b (v n) d -> b v n d", v=len(self.config.cameras))
            return self.student.fuse(vision_tokens, state, task)
        images = [self._get(batch, image_key(camera)) for camera in self.config.cameras]
        return self.student(images, state, task)

    # ------------------------------------------------------------------ losses

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Total loss and a dict of its parts (floats) for logging."""
        out = self.encode(batch)
        is_robot = ACTION in batch
        if not is_robot and not self.config.use_world_model:
            raise ValueError("a batch without 'action' (video) needs the world model, but use_world_model=False")
        logs: dict[str, float] = {}
        total = out.embodied_tokens.new_zeros(())
        if is_robot:
            action_loss = self.action_head.loss(batch[ACTION], out.embodied_tokens, out.state, batch.get(ACTION_IS_PAD))
            total = total + action_loss
            logs["loss/action"] = action_loss.item()
        if self.config.use_world_model:
            wm_loss, wm_logs = self.world_model_loss(out.latent_action_tokens, batch)
            total = total + (self.config.wm_weight if is_robot else 1.0) * wm_loss
            logs.update(wm_logs)
        if self.regularizer is not None:
            reg = self.regularizer(rearrange(out.vision_tokens, "b v n d -> (b v n) d"))
            total = total + self.config.reg_weight * reg
            logs["loss/reg"] = reg.item()
        logs["loss"] = total.item()
        return total, logs

    def world_model_loss(self, latent_action_tokens: Tensor, batch: Mapping[str, Any]) -> tuple[Tensor, dict]:
        """Distance between predicted and target latents of frames ``1..T-1``, padded frames excluded."""
        if self.target is None or self.predictor is None:
            raise RuntimeError("the world model is disabled (use_world_model=False)")
        latents = self.target_latents(batch)  # (b, T, v*N, d), no gradient
        latents = pool_latents(latents, len(self.config.cameras), self.config.predictor.latent_pool)  # (b, T, n, d)
        is_pad = batch.get(FUTURE_IS_PAD)  # (b, T); absent: every frame exists
        if is_pad is None:
            is_pad = torch.zeros(latents.shape[:2], dtype=torch.bool, device=latents.device)
        valid = ~is_pad[:, 1:]  # (b, T-1): whether each predicted frame exists

        hide = None
        if self.training and self.config.predictor.context_dropout > 0:  # these windows' futures need the tokens
            hide = torch.rand(latents.shape[0], device=latents.device) < self.config.predictor.context_dropout
        predicted = self.predictor(latents[:, :-1], latent_action_tokens, hide)  # (b, T-1, n, d)
        loss = self._latent_distance(predicted, latents[:, 1:], valid)
        logs = {"loss/wm": loss.item()}
        steps = self.config.predictor.rollout_steps
        if steps > 0:
            # Block-causal: the first imagined step equals teacher forcing's first prediction, so reuse it (not when
            # some windows hid their context: the rollout imagines from the frame it sees).
            first = predicted[:, 0] if hide is None else None
            imagined = self.predictor.rollout(
                latents[:, 0], latent_action_tokens[:, :steps], first_prediction=first
            )  # (b, r, n, d)
            rollout_loss = self._latent_distance(imagined, latents[:, 1 : steps + 1], valid[:, :steps])
            loss = loss + self.config.predictor.rollout_weight * rollout_loss
            logs["loss/wm_rollout"] = rollout_loss.item()
        return loss, logs

    def target_latents(self, batch: Mapping[str, Any]) -> Tensor:
        """Target latents ``(b, T, v*N, d)`` of the future clip: cached ones if the batch has them."""
        if FUTURE_LATENTS in batch:
            if self.target.kind != "frozen":
                raise ValueError(
                    f"{FUTURE_LATENTS!r} needs a frozen target; an EMA target changes every step"
                )
            latents = batch[FUTURE_LATENTS]
        else:
            clips = [self._get(batch, future_image_key(camera)) for camera in self.config.cameras]
            latents = self.target(clips)
        if latents.shape[1] != self.config.clip_length:
            raise ValueError(
                f"future clip has {latents.shape[1]} frames; clip_length is {self.config.clip_length}"
            )
        return latents

    def latent_step_distance(self, predicted: Tensor, target: Tensor) -> Tensor:
        """``(b, s)``: the mean per-element distance (``predictor.loss``) of each window's prediction of each step,
        ``predicted`` and ``target`` ``(b, s, n, d)``."""
        diff = predicted - target
        error = diff.abs() if self.config.predictor.loss == "l1" else diff.square()
        return error.mean(dim=(2, 3))

    def _latent_distance(self, predicted: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """Mean per-element distance over valid steps; ``valid`` ``(b, s)``."""
        per_step = self.latent_step_distance(predicted, target)  # (b, s)
        weights = valid.to(per_step.dtype)
        return (per_step * weights).sum() / weights.sum().clamp_min(1.0)

    # ------------------------------------------------------------------ training helpers

    @torch.no_grad()
    def update_target(self, momentum: float | None = None) -> None:
        """EMA step of the target encoder (call after each optimizer step); nothing for a frozen target."""
        if self.target is not None and self.target.kind == "ema":
            self.target.update(self.student.vision, self.config.target.ema_momentum if momentum is None else momentum)

    def on_optimizer_step(self) -> None:
        self.update_target()

    def init_vision(self, path: str | Path) -> None:
        """Start the student's vision encoder (and an EMA target, which must begin equal to it) from encoder weights
        saved by ``vlajepa pretrain-encoder``; errors name the file."""
        if not isinstance(self.student, Student):
            raise ValueError("init_vision starts the native student's vision encoder; this student is a VLM")
        load_encoder(self.student.vision, path, role="init_vision (student vision encoder)")
        if self.target is not None and self.target.kind == "ema":
            self.target.encoder.load_state_dict(self.student.vision.state_dict())

    def frozen_target(self) -> nn.Module | None:
        """The frozen target; for BC with a frozen pretrained vision encoder, that encoder (its features cached
        once per dataset are the student's vision tokens)."""
        if self.target is not None:
            return self.target if self.target.kind == "frozen" else None
        if self.config.reads_cached_features:
            if self.__dict__["_vision_cache_encoder"] is None:
                self.__dict__["_vision_cache_encoder"] = TargetEncoder(self.student.vision, "frozen")
            return self.__dict__["_vision_cache_encoder"]
        return None

    def frozen_references(self) -> dict[str, Any]:
        """What the checkpoint refers to instead of copying: the frozen target's weights file or seed, and a frozen
        pretrained vision backbone's package and file hash."""
        references: dict[str, Any] = {}
        target = self.config.target
        if self.target is not None and target.kind == "frozen":
            references["frozen_target"] = {
                "checkpoint": target.checkpoint,
                "seed": target.seed if target.checkpoint is None else None,
            }
        if self.target is not None and target.kind == "vjepa2":
            references["frozen_target"] = {
                "vjepa2": target.vjepa2.model_dir,
                "seed": target.seed if target.vjepa2.model_dir is None else None,
            }
        for name, vision in (("vision", self.config.vision), ("target.vision", target.vision)):
            if vision is not None and vision.backbone != "vit":
                from vlajepa.nn import efficientnet

                references[name] = {"package": efficientnet.PACKAGE, "sha256": efficientnet.WEIGHTS_SHA256}
        return references

    def get_optim_params(self) -> dict[str, list[nn.Parameter]]:
        """Parameters that require gradients, by module, for per-module learning rates
        (:class:`~vlajepa.train.config.LearningRateScales`)."""
        if isinstance(self.student, Student):
            student_rest = [
                p for name, p in self.student.named_parameters() if not name.startswith(("vision.", "language."))
            ]
            groups = {
                "vision": list(self.student.vision.parameters()),
                "language": list(self.student.language.parameters()),
                "student": student_rest,
            }
        else:
            groups = self.student.optim_groups()
        groups |= {
            "action_head": list(self.action_head.parameters()),
            "predictor": list(self.predictor.parameters()) if self.predictor is not None else [],
        }
        return {name: [p for p in params if p.requires_grad] for name, params in groups.items()}

    def frozen_prefixes(self) -> tuple[str, ...]:
        prefixes = ("target.",) if self.target is not None and self.target.kind == "frozen" else ()
        if self.config.vision.backbone != "vit" and self.config.vision.freeze == "all":
            prefixes += ("student.vision.",)  # the packaged weights, checked by their hash when loaded
        return prefixes


def build_student(config: VLAJEPAConfig, *, load_weights: bool = True) -> nn.Module:
    """The student ``config.student.backbone`` names (``load_weights``: read a VLM's weights from its folder)."""
    if config.student.backbone == "hf_vlm":
        from vlajepa.policies.vla_jepa.student_hf import HFVLMStudent

        return HFVLMStudent(config, load_weights=load_weights)
    return Student(config)


def build_target(config: VLAJEPAConfig, student: nn.Module, *, load_weights: bool = True) -> nn.Module:
    """The target ``config.target.kind`` names: an EMA copy of the native student's vision encoder, a frozen vlajepa
    encoder, or a frozen V-JEPA 2."""
    if config.target.kind == "vjepa2":
        from vlajepa.nn.vjepa2 import VJEPA2Target

        target = VJEPA2Target(config.target.vjepa2, config.target.seed, load_weights=load_weights)
        side = target.image_size // target.patch
        if side % config.predictor.latent_pool:
            raise ValueError(f"predictor.latent_pool={config.predictor.latent_pool} does not divide V-JEPA 2's token "
                             f"grid side {side}")  # fmt: skip
        return target
    return build_target_encoder(
        config.target, getattr(student, "vision", None), config.vision, config.image_size, load_weights=load_weights
    )
