"""The LAPA policy (type ``lapa``): VLA-JEPA's student and flow-matching action head, pretrained to predict a
frozen latent action model's codes instead of a world model's latents (Ye et al., arXiv 2410.11758).

- ``stage: latent`` (latent pretraining): the student sees ``o_t`` and the instruction only; a code head (layer norm
  + linear) on its ``num_latent_action_tokens`` latent-action tokens predicts, per token, the code index the frozen
  latent action model assigns to ``(o_t, o_{t+H})`` (cross-entropy). ``o_{t+H}`` (``future.images.<camera>``,
  frame 1 of the clip) is read by the latent action model only, as the label's source. Robot and video batches
  cost the same; actions are not used.
- ``stage: action`` (action fine-tuning): the flow-matching action head's loss on robot actions, exactly BC's, from
  a latent-stage checkpoint (``vlajepa train --method lapa --init-from``).

Where this differs from the paper: LAPA's VLA is LWM-Chat-1M (7B) with a latent-action head over a vocabulary of
8 per token and, for fine-tuning, a new MLP action head on discretized actions; here the student and action head are
the project's (the same as VLA-JEPA's, so the comparison holds the architecture fixed), the embodied-action tokens
attend to the latent-action tokens, and actions come from flow matching.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlajepa.config import ConfigError
from vlajepa.constants import ACTION, ACTION_IS_PAD, FUTURE_IS_PAD, OBS_STATE, TASK, future_image_key, image_key
from vlajepa.nn.action_head import FlowMatchingActionHead
from vlajepa.nn.target import load_encoder
from vlajepa.nn.transformer import init_weights
from vlajepa.normalize import Normalizer
from vlajepa.policies.flow_policy import FlowPolicy
from vlajepa.policies.lapa.configuration import LAPAConfig
from vlajepa.policies.lapa.lam import LatentActionModel, load_lam_config
from vlajepa.policies.vla_jepa.student import Student, StudentOutput

logger = logging.getLogger(__name__)


class LAPAPolicy(FlowPolicy):
    """LAPA on the VLA-JEPA student; ``forward(batch) -> (loss, logs)`` trains the configured ``stage``,
    ``predict_action_chunk(observation)`` acts (any stage; the action stage is the one trained to)."""

    config_class = LAPAConfig
    config: LAPAConfig

    def __init__(
        self,
        config: LAPAConfig,
        normalizer: Normalizer | None = None,
        *,
        n_action_steps: int | None = None,
        num_inference_steps: int | None = None,
        noise_scale: float = 1.0,
        seed: int = 0,
        load_lam: bool = True,
    ) -> None:
        """``load_lam=False``: do not read the latent action model (acting does not use it; :meth:`from_pretrained`
        passes it when its folder is not on this machine). Other arguments as for VLA-JEPA."""
        super().__init__(
            config,
            normalizer,
            n_action_steps=n_action_steps,
            num_inference_steps=num_inference_steps,
            noise_scale=noise_scale,
            seed=seed,
        )
        self.student = Student(config)  # type: ignore[arg-type] - reads the fields VLAJEPAConfig and LAPAConfig share
        self.action_head = FlowMatchingActionHead(
            config.action_head, config.action_dim, config.chunk_size, config.state_dim, config.student.dim
        )
        self.code_head = nn.Sequential(nn.LayerNorm(config.student.dim), nn.Linear(config.student.dim,
                                                                                  config.codebook_size))  # fmt: skip
        self.code_head.apply(init_weights)
        self.lam: LatentActionModel | None = None
        if config.stage == "latent" and load_lam:
            lam_dir = Path(str(config.lam))
            config.check_lam(load_lam_config(lam_dir), str(lam_dir))
            self.lam = LatentActionModel.load(lam_dir)

    @classmethod
    def checkpoint_init_kwargs(cls, config: LAPAConfig, directory: str | Path) -> dict[str, Any]:
        """The latent action model is referenced, not copied; acting does not need it, so a latent-stage checkpoint
        moved to another machine still loads (its code loss then cannot be computed)."""
        missing = config.stage == "latent" and not (Path(str(config.lam)) / "lam_config.json").is_file()
        if missing:
            logger.warning("%s: latent action model %s not found; loaded without it (acting does not use it)",
                           directory, config.lam)  # fmt: skip
        return {"load_lam": not missing}

    def train(self, mode: bool = True) -> LAPAPolicy:
        super().train(mode)
        if self.lam is not None:
            self.lam.eval()  # frozen: NSVQ gives exact codebook entries and counts nothing
        return self

    # ------------------------------------------------------------------ inputs

    def encode(self, batch: Mapping[str, Any]) -> StudentOutput:
        """The student's outputs; a function of the current images, state and instruction only."""
        images = [self._get(batch, image_key(camera)) for camera in self.config.cameras]
        return self.student(images, batch.get(OBS_STATE), self._get(batch, TASK))

    def code_logits(self, out: StudentOutput) -> Tensor:
        """``(b, num_latent_action_tokens, codebook_size)``: the student's prediction of the latent action codes."""
        return self.code_head(out.latent_action_tokens[:, 0])

    @torch.no_grad()
    def target_codes(self, batch: Mapping[str, Any]) -> Tensor:
        """The frozen latent action model's codes ``(b, num_latent_action_tokens)`` of ``(o_t, o_{t+H})``."""
        if self.lam is None:
            raise ConfigError(
                f"lam: the latent action model {self.config.lam} was not loaded; the latent stage needs it"
            )
        clip = self._get(batch, future_image_key(self.lam.config.camera))  # (b, 2, 3, S, S)
        return self.lam.codes(clip[:, 0], clip[:, 1])

    # ------------------------------------------------------------------ losses

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        out = self.encode(batch)
        if self.config.stage == "latent":
            codes = self.target_codes(batch)  # (b, k)
            logits = self.code_logits(out)  # (b, k, C)
            per_token = F.cross_entropy(logits.flatten(0, 1), codes.flatten(), reduction="none").view(codes.shape)
            is_pad = batch.get(FUTURE_IS_PAD)
            valid = torch.ones_like(codes[:, 0], dtype=torch.bool) if is_pad is None else ~is_pad[:, 1]
            weights = valid.to(per_token.dtype)[:, None].expand_as(per_token)
            loss = (per_token * weights).sum() / weights.sum().clamp_min(1.0)
            correct = ((logits.argmax(-1) == codes).to(per_token.dtype) * weights).sum() / weights.sum().clamp_min(1)
            return loss, {"loss": loss.item(), "loss/codes": loss.item(), "codes/accuracy": correct.item()}
        if ACTION not in batch:
            raise ValueError("the action stage trains on robot batches with 'action'; a video batch needs stage=latent")
        loss = self.action_head.loss(batch[ACTION], out.embodied_tokens, out.state, batch.get(ACTION_IS_PAD))
        return loss, {"loss": loss.item(), "loss/action": loss.item()}

    # ------------------------------------------------------------------ training helpers

    def init_vision(self, path: str | Path) -> None:
        """Start the student's vision encoder from ``vlajepa pretrain-encoder`` weights; errors name the file."""
        load_encoder(self.student.vision, path, role="init_vision (student vision encoder)")

    def get_optim_params(self) -> dict[str, list[nn.Parameter]]:
        rest = [p for name, p in self.student.named_parameters() if not name.startswith(("vision.", "language."))]
        groups = {
            "vision": list(self.student.vision.parameters()),
            "language": list(self.student.language.parameters()),
            "student": rest + list(self.code_head.parameters()),
            "action_head": list(self.action_head.parameters()),
        }
        return {name: [p for p in params if p.requires_grad] for name, params in groups.items()}

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ("lam.",)

    def frozen_references(self) -> dict[str, Any]:
        return {"latent_action_model": self.config.lam} if self.config.stage == "latent" else {}
