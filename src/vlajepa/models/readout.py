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

import torch
from einops import rearrange
from torch import Tensor, nn

from vlajepa.models.transformer import MLP, Attention, init_weights, learned_embedding


class EnvironmentStateHead(nn.Module):
    """``(b, m, d)`` tokens (embodied, patch or keypoint tokens, ``model.environment_state_source``) -> ``(b, e)``
    normalized scene state; ``loss`` is the mean squared error.

    ``kind="flat"``: an MLP over all tokens at once (a separate weight for every token position). ``kind="attention"``
    (``model.environment_state_head``): one learned query per output coordinate attends over the tokens and reads
    its value off the pooled token, with weights shared across token positions, so a detector learned where objects
    appeared in training also fires where they did not (far fewer weights: about 0.1M instead of 1M for patches).
    """

    def __init__(
        self, num_tokens: int, dim: int, out_dim: int, hidden: int | None = None, kind: str = "flat", heads: int = 4
    ) -> None:
        super().__init__()
        self.kind = kind
        if kind == "flat":
            hidden = hidden or dim  # width of the hidden layer (default: the token width)
            self.net = nn.Sequential(
                nn.LayerNorm(num_tokens * dim),
                nn.Linear(num_tokens * dim, hidden),
                nn.GELU(),
                nn.Linear(hidden, out_dim),
            )
        elif kind == "attention":
            self.norm = nn.LayerNorm(dim)
            self.queries = learned_embedding(out_dim, dim)
            self.attention = Attention(dim, heads)
            self.mlp_norm = nn.LayerNorm(dim)
            self.mlp = MLP(dim, 2.0)
            self.out_weight = nn.Parameter(torch.zeros(out_dim, dim))  # coordinate i reads query i's token
            self.out_bias = nn.Parameter(torch.zeros(out_dim))
            for module in (self.attention, self.mlp):
                module.apply(init_weights)
        else:
            raise ValueError(f"unknown read-out kind {kind!r}; expected flat or attention")

    def forward(self, tokens: Tensor) -> Tensor:
        if self.kind == "flat":
            return self.net(rearrange(tokens, "b m d -> b (m d)"))
        queries = self.queries.expand(tokens.shape[0], -1, -1)  # (b, e, d)
        pooled = queries + self.attention(queries, context=self.norm(tokens))
        pooled = pooled + self.mlp(self.mlp_norm(pooled))
        return torch.einsum("bed,ed->be", pooled, self.out_weight) + self.out_bias

    def loss(self, tokens: Tensor, target: Tensor) -> Tensor:
        prediction = self(tokens)
        if prediction.shape != target.shape:
            raise ValueError(
                f"observation.environment_state has shape {tuple(target.shape)}; the model predicts "
                f"{tuple(prediction.shape)} (model.environment_state_dim)"
            )
        return nn.functional.mse_loss(prediction, target.to(prediction.dtype))
