"""Training-time augmentation of the student's input: image shifts and instruction dropout.

Random shift (DrQ; pad by ``pad`` pixels with edge replication, crop back at a random offset per sample) is the
standard regularizer for pixel policies trained from a few demonstrations. It changes only the student's current
image: world-model targets (``future.images.*`` / cached latents) stay the clean frames, so the student must
predict the real future from a perturbed view.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlajepa.constants import TASK, image_key


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image of ``(b, c, h, w)`` shifted by an independent integer offset in ``[-pad, pad]`` per axis."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    return torch.stack(
        [padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())]
    )


def augment_batch(batch: dict[str, Any], cameras: tuple[str, ...] | list[str], pad: int) -> dict[str, Any]:
    """A copy of ``batch`` whose current images are randomly shifted (future frames untouched)."""
    if pad <= 0:
        return batch
    out = dict(batch)
    for camera in cameras:
        out[image_key(camera)] = random_shift(batch[image_key(camera)], pad)
    return out


def drop_instructions(batch: dict[str, Any], rate: float, generator: torch.Generator | None = None) -> dict[str, Any]:
    """A copy of ``batch`` in which each window's instruction is replaced by the empty string with probability
    ``rate`` (the student then has to read the task off the image)."""
    if rate <= 0:
        return batch
    dropped = (torch.rand(len(batch[TASK]), generator=generator) < rate).tolist()
    return {**batch, TASK: ["" if drop else text for text, drop in zip(batch[TASK], dropped, strict=True)]}
