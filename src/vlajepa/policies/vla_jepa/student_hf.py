"""The VLA-JEPA student on a Hugging Face VLM (``student.backbone: hf_vlm``): the same contract as the native
:class:`~vlajepa.policies.vla_jepa.student.Student` (latent-action tokens ``(b, T-1, K, d)``, embodied tokens
``(b, M, d)``), so the predictor, action head, trainer, evaluation and server need no change.

The VLM (:mod:`vlajepa.nn.hf_vlm`) sees the current image of every camera and the instruction, nothing else; the
future clip is not an input (the leakage rule by construction). Its query tokens' last hidden states are projected
from the VLM's width to ``student.dim``. It reads no state: the state passes through to the action head.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vlajepa.nn.hf_vlm import HFVLMBackbone
from vlajepa.nn.transformer import init_weights
from vlajepa.policies.vla_jepa.configuration import VLAJEPAConfig
from vlajepa.policies.vla_jepa.student import StudentOutput


class HFVLMStudent(nn.Module):
    """A VLM read out through query tokens; ``forward(images, state, task)`` -> :class:`StudentOutput`."""

    def __init__(self, config: VLAJEPAConfig, *, load_weights: bool = True) -> None:
        super().__init__()
        self.cameras = config.cameras
        self.dim = config.student.dim
        self.vlm = HFVLMBackbone(
            config.student.hf_vlm,
            num_steps=config.clip_length - 1,
            num_latent=config.num_latent_action_tokens,
            num_embodied=config.num_embodied_tokens,
            load_weights=load_weights,
        )
        self.latent_proj = nn.Linear(self.vlm.hidden_size, self.dim)
        self.embodied_proj = nn.Linear(self.vlm.hidden_size, self.dim)
        for module in (self.latent_proj, self.embodied_proj):
            module.apply(init_weights)

    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: the VLM's vision tower, its language model, the projections."""
        return {
            "vision": self.vlm.vision_parameters(),
            "language": self.vlm.language_parameters(),
            "student": [*self.latent_proj.parameters(), *self.embodied_proj.parameters()],
        }

    def forward(self, images: Sequence[Tensor], state: Tensor | None, task: Sequence[str]) -> StudentOutput:
        """``images``: current frames ``(b, 3, H, W)`` in camera order; ``state`` is handed to the action head."""
        if len(images) != len(self.cameras):
            raise ValueError(f"expected {len(self.cameras)} camera images, got {len(images)}")
        out = self.vlm(list(images), list(task))
        return StudentOutput(self.latent_proj(out.latent), self.embodied_proj(out.embodied), out.image_tokens, state)
