"""Tiny configurations and random batches for tests (model, trainer, server): seconds on a CPU."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vlajepa.constants import ACTION, ACTION_IS_PAD, FUTURE_IS_PAD, OBS_STATE, TASK, future_image_key, image_key
from vlajepa.nn.config import (
    ActionHeadConfig,
    LanguageConfig,
    PredictorConfig,
    RegularizerConfig,
    TargetConfig,
    VisionConfig,
)
from vlajepa.policies.planning import ScoreConfig, WorldModelConfig
from vlajepa.policies.vla_jepa import StudentConfig, VLAJEPAConfig

TASKS = ("pick up the red block", "open the drawer", "press the button from the top")


def tiny_config(**changes: Any) -> VLAJEPAConfig:
    """The ``tiny`` preset's model (a test keeps the two equal), with top-level ``changes`` applied."""
    config = VLAJEPAConfig(
        cameras=("corner2",),
        image_size=32,
        state_dim=4,
        action_dim=4,
        chunk_size=4,
        n_action_steps=4,
        clip_length=3,
        frame_stride=2,
        num_latent_action_tokens=2,
        num_embodied_tokens=2,
        use_world_model=True,
        wm_weight=1.0,
        reg_weight=0.0,
        vision=VisionConfig(patch_size=8, dim=32, depth=1, heads=2, mlp_ratio=2.0),
        language=LanguageConfig(kind="tiny", dim=32, depth=1, heads=2, vocab_size=512, max_tokens=16),
        student=StudentConfig(dim=32, depth=2, heads=2, mlp_ratio=2.0, use_state=True),
        target=TargetConfig(kind="ema", ema_momentum=0.99),
        predictor=PredictorConfig(dim=32, depth=1, heads=2, mlp_ratio=2.0, loss="l1", rollout_steps=0),
        action_head=ActionHeadConfig(dim=32, depth=1, heads=2, mlp_ratio=2.0, num_inference_steps=4),
        regularizer=RegularizerConfig(kind="sigreg", num_slices=16, num_points=17),
    )
    return dataclasses.replace(config, **changes)


# a planner's world model and score at the tiny model's size (tests/test_planner*.py)
TINY_WORLD_MODEL = WorldModelConfig(
    encoder=VisionConfig(patch_size=8, dim=32, depth=1, heads=2, mlp_ratio=2.0),
    latent_pool=2,
    predictor=PredictorConfig(dim=32, depth=1, heads=2, mlp_ratio=2.0, residual=True, rollout_steps=2),
    language=LanguageConfig(kind="tiny", dim=32, depth=1, heads=2, vocab_size=512, max_tokens=16),
    max_steps=2,
)
TINY_SCORE = ScoreConfig(dim=32, depth=1, heads=2)


def random_batch(
    config: VLAJEPAConfig, batch_size: int = 2, *, robot: bool = True, seed: int = 0
) -> dict[str, Any]:
    """A random batch in the model's format; ``robot=False`` gives a video batch (no actions, no state)."""
    g = torch.Generator().manual_seed(seed)
    size, steps = config.image_size, config.clip_length
    batch: dict[str, Any] = {TASK: [TASKS[i % len(TASKS)] for i in range(batch_size)]}
    for camera in config.cameras:
        clip = torch.rand(batch_size, steps, 3, size, size, generator=g)
        batch[image_key(camera)] = clip[:, 0].clone()
        batch[future_image_key(camera)] = clip
    batch[FUTURE_IS_PAD] = torch.zeros(batch_size, steps, dtype=torch.bool)
    if robot:
        batch[OBS_STATE] = torch.randn(batch_size, config.state_dim, generator=g)
        batch[ACTION] = torch.rand(batch_size, config.chunk_size, config.action_dim, generator=g) * 2 - 1
        batch[ACTION_IS_PAD] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    return batch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: tiny tensors gain nothing from more, and on a busy 2-core machine a spinning
    second thread makes a tiny step ten times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
