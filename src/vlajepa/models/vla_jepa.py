"""VLA-JEPA: the student, the flow-matching action head and the latent world model, with their losses.

Batch format (torch tensors, batch dimension first):

- ``observation.images.<camera>``: float ``(b, 3, H, W)`` in ``[0, 1]``, the current frame (the student's only
  image);
- ``observation.state``: ``(b, S)`` normalized (optional: a learned placeholder stands in when absent);
- ``task``: ``list[str]`` of instructions;
- ``future.images.<camera>``: float ``(b, T, 3, H, W)``, frames ``t, t+s, ..., t+(T-1)s`` (the first is the
  current frame); read by the target encoder only, as targets of the world model;
- ``future.latents``: optional ``(b, T, v*N, d)``, the frozen target's latents of that clip computed ahead (a
  latent cache); used instead of ``future.images.*`` when present;
- ``future_is_pad``: bool ``(b, T)``, True for frames past the episode end (their predictions leave the loss);
- ``action``: ``(b, H, A)`` normalized, and ``action_is_pad``: bool ``(b, H)`` — robot batches only;
- ``observation.environment_state``: ``(b, E)`` normalized object and goal positions, a label read only with
  ``environment_state_dim > 0`` — robot batches only. With ``act_on_environment_state`` the student and the action
  head read ``observation.state`` joined with the scene state: this label (plus noise) in training, the read-out's
  estimate from the current frame when acting.

A robot batch (with ``action``) costs ``L_action + beta * L_wm (+ lambda * R) (+ w_env * L_env)``; a video batch (no
``action``) costs ``L_wm (+ lambda * R)``; with ``use_world_model=False`` the model is plain behaviour cloning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.config import VLAJEPAConfig
from vlajepa.constants import (  # noqa: F401 - FUTURE_IMAGES and future_image_key re-exported
    ACTION,
    ACTION_IS_PAD,
    FUTURE_IMAGES,
    FUTURE_IS_PAD,
    FUTURE_LATENTS,
    OBS_ENV_STATE,
    OBS_STATE,
    TASK,
    future_image_key,
    image_key,
)
from vlajepa.models.action_head import FlowMatchingActionHead
from vlajepa.models.predictor import Predictor, pool_latents
from vlajepa.models.readout import EnvironmentStateHead
from vlajepa.models.regularizers import build_regularizer
from vlajepa.models.student import Student, StudentOutput
from vlajepa.models.target import build_target_encoder


class VLAJEPA(nn.Module):
    """The model; ``forward(batch) -> (loss, logs)``, ``predict_action(batch) -> (b, H, A)`` normalized."""

    def __init__(self, config: VLAJEPAConfig, *, load_target_weights: bool = True) -> None:
        """``load_target_weights=False``: do not read a frozen target's weights file (acting does not use the
        target; :func:`vlajepa.checkpoint.load_model` uses this when the file is not on this machine)."""
        super().__init__()
        self.config = config
        self.student = Student(config)
        self.action_head = FlowMatchingActionHead(
            config.action_head, config.action_dim, config.chunk_size, config.actor_state_dim, config.student.dim
        )
        self.target = None
        self.predictor = None
        if config.use_world_model:
            self.target = build_target_encoder(
                config.target, self.student.vision, config.vision, config.image_size, load_weights=load_target_weights
            )
            self.predictor = Predictor(
                config.predictor,
                latent_dim=self.target.dim,
                tokens_per_frame=len(config.cameras) * self.target.tokens_per_view // config.predictor.latent_pool**2,
                condition_dim=config.student.dim,
                conditions_per_step=config.num_latent_action_tokens,
                max_steps=config.clip_length - 1,
            )
        self.regularizer = build_regularizer(config.regularizer) if config.reg_weight > 0 else None
        self.environment_state_head = None
        if config.environment_state_dim:
            if config.environment_state_source == "vision":
                tokens, dim = len(config.cameras) * self.student.vision.num_patches, config.vision.dim
            elif config.environment_state_source == "keypoints":
                tokens, dim = len(config.cameras) * config.student.keypoints, config.student.dim
            else:
                tokens, dim = config.num_embodied_tokens, config.student.dim
            self.environment_state_head = EnvironmentStateHead(
                tokens, dim, config.environment_state_dim, kind=config.environment_state_head
            )

    # ------------------------------------------------------------------ inputs

    def _get(self, batch: Mapping[str, Any], key: str) -> Any:
        if key not in batch:
            raise KeyError(f"batch has no {key!r}; it has {sorted(batch)}")
        return batch[key]

    def encode(self, batch: Mapping[str, Any]) -> StudentOutput:
        """The student's outputs; a function of the current images, state and instruction only (and, with
        ``act_on_environment_state``, of the current frame's scene label on training robot batches)."""
        images = [self._get(batch, image_key(camera)) for camera in self.config.cameras]
        state, task = batch.get(OBS_STATE), self._get(batch, TASK)
        vision_tokens, keypoint_tokens = self.student.encode_views(images)
        # video batches have no state: the student's placeholder stands for all of it
        if self.config.act_on_environment_state and state is not None:
            scene = self._scene_input(batch, self._view_scene_tokens(vision_tokens, keypoint_tokens))
            state = torch.cat([state, scene], dim=-1)
        return self.student.fuse(vision_tokens, keypoint_tokens, state, task)

    def _scene_input(self, batch: Mapping[str, Any], scene_tokens: Tensor) -> Tensor:
        """``(b, E)`` normalized scene state joined to the state: in training, the label plus
        ``environment_state_noise`` Gaussian noise (the actor learns to act on imprecise positions); otherwise (and
        for batches without the label) the read-out's estimate from these tokens, with no gradient, so the
        action loss never trains the read-out to please the actor."""
        if self.training and OBS_ENV_STATE in batch:
            label = batch[OBS_ENV_STATE]
            if label.shape != (scene_tokens.shape[0], self.config.environment_state_dim):
                raise ValueError(
                    f"observation.environment_state has shape {tuple(label.shape)}; expected "
                    f"({scene_tokens.shape[0]}, {self.config.environment_state_dim}) (model.environment_state_dim)"
                )
            noise = self.config.environment_state_noise
            return label + noise * torch.randn_like(label) if noise > 0 else label
        return self.require_environment_state_head()(scene_tokens).detach()

    # ------------------------------------------------------------------ losses

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Total loss and a dict of its parts (floats) for logging."""
        out = self.encode(batch)
        is_robot = ACTION in batch
        if not is_robot and not self.config.use_world_model:
            raise ValueError(
                "a batch without 'action' (video) needs the world model, but use_world_model=False"
            )
        logs: dict[str, float] = {}
        total = out.embodied_tokens.new_zeros(())
        if is_robot:
            action_loss = self.action_head.loss(
                batch[ACTION], out.embodied_tokens, out.state, batch.get(ACTION_IS_PAD)
            )
            total = total + action_loss
            logs["loss/action"] = action_loss.item()
            if self.environment_state_head is not None:
                env_loss = self.environment_state_head.loss(self._scene_tokens(out), self._get(batch, OBS_ENV_STATE))
                total = total + self.config.environment_state_weight * env_loss
                logs["loss/environment_state"] = env_loss.item()
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

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict_action(
        self,
        batch: Mapping[str, Any],
        num_steps: int | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> Tensor:
        """Normalized action chunks ``(b, H, A)`` from the current observation (``num_steps`` Euler steps,
        ``noise_scale`` as in :meth:`FlowMatchingActionHead.sample`)."""
        out = self.encode(batch)
        return self.action_head.sample(
            out.embodied_tokens, out.state, num_steps, noise, generator, noise_scale=noise_scale
        )

    def require_environment_state_head(self) -> EnvironmentStateHead:
        """The scene-state read-out; ValueError for a model trained with ``environment_state_dim=0``."""
        if self.environment_state_head is None:
            raise ValueError("this model has no scene-state read-out (trained with model.environment_state_dim=0)")
        return self.environment_state_head

    def predict_environment_state(self, batch: Mapping[str, Any]) -> Tensor:
        """Normalized ``(b, E)`` object and goal positions from the scene-state read-out, given the same inputs as
        :meth:`predict_action`."""
        return self.require_environment_state_head()(self._scene_tokens(self.encode(batch)))

    def _scene_tokens(self, out: StudentOutput) -> Tensor:
        """``(b, n, d)``: the tokens the scene-state read-out reads (``config.environment_state_source``)."""
        if self.config.environment_state_source == "embodied":
            return out.embodied_tokens
        return self._view_scene_tokens(out.vision_tokens, out.keypoint_tokens)

    def _view_scene_tokens(self, vision_tokens: Tensor, keypoint_tokens: Tensor | None) -> Tensor:
        """``(b, n, d)``: the current-frame tokens a ``vision`` or ``keypoints`` read-out reads, every view's."""
        if self.config.environment_state_source == "keypoints":
            return rearrange(keypoint_tokens, "b v k d -> b (v k) d")
        return rearrange(vision_tokens, "b v n d -> b (v n) d")

    # ------------------------------------------------------------------ training helpers

    @torch.no_grad()
    def update_target(self, momentum: float | None = None) -> None:
        """EMA step of the target encoder (call after each optimizer step); nothing for a frozen target."""
        if self.target is not None and self.target.kind == "ema":
            self.target.update(
                self.student.vision, self.config.target.ema_momentum if momentum is None else momentum
            )

    def trainable_parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters that require gradients, by module, for per-module learning rates."""
        student_rest = [
            p for name, p in self.student.named_parameters() if not name.startswith(("vision.", "language."))
        ]
        if self.environment_state_head is not None:  # a read-out of the student's tokens: the student's rate
            student_rest += list(self.environment_state_head.parameters())
        groups = {
            "vision": list(self.student.vision.parameters()),
            "language": list(self.student.language.parameters()),
            "student": student_rest,
            "action_head": list(self.action_head.parameters()),
            "predictor": list(self.predictor.parameters()) if self.predictor is not None else [],
        }
        return {name: [p for p in params if p.requires_grad] for name, params in groups.items()}

    def _excluded_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen modules, which checkpoints reference instead of copying."""
        return ("target.",) if self.target is not None and self.target.kind == "frozen" else ()

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores: everything but frozen modules (the MiniLM is not a submodule)."""
        excluded = self._excluded_prefixes()
        return {k: v for k, v in self.state_dict().items() if not (excluded and k.startswith(excluded))}

    def load_checkpoint_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load :meth:`checkpoint_state_dict` output; raises ValueError naming missing or unexpected keys."""
        expected = self.checkpoint_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        if missing or unexpected or wrong_shape:
            details = []
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            ):
                if keys:
                    details.append(f"{len(keys)} {label} (e.g. {keys[0]!r})")
            raise ValueError("weights do not match the config: " + ", ".join(details))
        self.load_state_dict(dict(state), strict=False)
