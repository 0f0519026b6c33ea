"""Auxiliary read-out of the scene state (object and goal positions) from the student's tokens.

Why: a pixel policy given the simulator's object and goal positions as input reaches about twice the success of the
same policy from pixels (README, privileged-state diagnostic), so its failures are mostly in turning the image into
positions. This head gives that skill a direct training signal: on robot batches the embodied tokens, the ones the
action head reads, must also predict ``observation.environment_state`` (normalized). The positions are a label
only: nothing at inference reads them.

Measured on MT10 (README): alone it leaves in-distribution success where it was (39.0 %; 41.5 % with 100
demonstrations per task); with 32 keypoint tokens and 100 demonstrations it scores 52.5 %, against 45.0 % without it.

``model.environment_state_source="vision"`` reads the student's current-frame patch tokens instead, so the label
teaches the vision encoder where things are and nothing downstream of it; the head then serves as a scene estimator
for a privileged-state actor (``vlajepa eval --scene-from``), an explicit position interface. With
``model.act_on_environment_state`` that interface is inside one network: the student and the action head read the
state joined with the scene (the label plus noise in training, this head's estimate when acting).
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn


class EnvironmentStateHead(nn.Module):
    """``(b, m, d)`` tokens (embodied or patch tokens, ``model.environment_state_source``) -> ``(b, e)`` normalized
    scene state; ``loss`` is the mean squared error."""

    def __init__(self, num_tokens: int, dim: int, out_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim  # width of the hidden layer (default: the token width)
        self.net = nn.Sequential(
            nn.LayerNorm(num_tokens * dim), nn.Linear(num_tokens * dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(rearrange(tokens, "b m d -> b (m d)"))

    def loss(self, tokens: Tensor, target: Tensor) -> Tensor:
        prediction = self(tokens)
        if prediction.shape != target.shape:
            raise ValueError(
                f"observation.environment_state has shape {tuple(target.shape)}; the model predicts "
                f"{tuple(prediction.shape)} (model.environment_state_dim)"
            )
        return nn.functional.mse_loss(prediction, target.to(prediction.dtype))
