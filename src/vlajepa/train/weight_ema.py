"""Exponential moving average of the trained weights: the policy a checkpoint serves.

Diffusion Policy evaluates a Polyak average of its weights rather than the last optimizer iterate, which is noisy
step to step. The decay warms up as ``1 - (1 + step) ** -POWER`` (Diffusion Policy's schedule, its power 0.75),
capped at ``max_decay``: early weights, which are poor, are forgotten quickly, and the average spans more steps as
training goes on (about 200 steps at step 1200). Only trainable parameters are averaged; buffers and frozen modules
are the model's own.

With averaging on, a checkpoint's ``model.safetensors`` holds the averaged weights (what
:meth:`VLAJEPAPolicy.from_pretrained` and evaluation load) and :data:`RAW_WEIGHTS_FILE` the optimizer's iterate, so
a resumed run continues from exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

POWER = 0.75
RAW_WEIGHTS_FILE = "raw_model.safetensors"


def ema_decay(step: int, max_decay: float) -> float:
    """Decay used for the update after optimizer step ``step`` (1-based)."""
    return min(max_decay, 1.0 - (1.0 + step) ** -POWER)


class WeightEMA:
    """Averages of ``model``'s trainable parameters (by name), updated after every optimizer step."""

    def __init__(self, model: nn.Module, max_decay: float) -> None:
        if not 0.0 < max_decay < 1.0:
            raise ValueError(f"max_decay={max_decay} must be in (0, 1)")
        self.max_decay = max_decay
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = ema_decay(step, self.max_decay)
        for name, p in self.params.items():
            self.average[name].lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    @torch.no_grad()
    def swapped(self) -> Iterator[None]:
        """Inside, the model's parameters hold the averages (to save or evaluate); the iterate is put back after."""
        raw = {name: p.detach().clone() for name, p in self.params.items()}
        try:
            for name, p in self.params.items():
                p.copy_(self.average[name])
            yield
        finally:
            for name, p in self.params.items():
                p.copy_(raw[name])

    def raw_state(self) -> dict[str, Tensor]:
        """The optimizer's iterate of every averaged parameter (saved as :data:`RAW_WEIGHTS_FILE`)."""
        return {name: p.detach() for name, p in self.params.items()}

    @torch.no_grad()
    def restore(self, raw: dict[str, Tensor]) -> None:
        """After the model was loaded with the averaged weights: take them as the averages and put the iterate
        ``raw`` back into the parameters."""
        missing = sorted(set(self.params) - set(raw))
        if missing:
            raise ValueError(f"{len(missing)} trainable weights missing (e.g. {missing[0]!r})")
        for name, p in self.params.items():
            self.average[name] = p.detach().clone()
            p.copy_(raw[name])
