"""AdamW with per-module learning rates, and the warmup + cosine schedule (stepped once per optimizer step).

Only trainable parameters enter the optimizer: a frozen target encoder and the frozen MiniLM are neither
parameters of any group nor in ``optimizer.pt``. A module whose learning-rate scale is 0 is frozen the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from vlajepa.policies import PreTrainedPolicy
from vlajepa.train.config import TrainConfig


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warmup, then cosine to ``min_lr_ratio``."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decay_steps = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Parameters exempt from weight decay: biases, norms, learned embeddings and queries, embedding tables.

    Decay applies to the ``weight`` matrices of linear and convolution layers only.
    """
    embedding_tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {
        id(p)
        for name, p in model.named_parameters()
        if p.ndim < 2 or not name.endswith(".weight") or id(p) in embedding_tables
    }


def build_optimizer(
    policy: PreTrainedPolicy, config: TrainConfig, *, extra: Mapping[str, nn.Module] | None = None
) -> AdamW:
    """AdamW over ``policy.get_optim_params()``; each group named ``<module>`` or ``<module>/no_decay``, at the
    base learning rate times the group's ``lr_scales`` entry (1 for a group it does not name).

    ``extra``: more models with a ``get_optim_params()`` trained in the same steps (e.g. a co-trained planner's
    world model and score), their groups named ``<prefix><module>``.
    Modules with learning-rate scale 0 get ``requires_grad=False`` and stay out of the optimizer.
    """
    scales = dataclasses.asdict(config.lr_scales)
    groups = []
    for prefix, model in [("", policy), *(extra or {}).items()]:
        no_decay_ids = _no_decay_ids(model)
        for module, params in model.get_optim_params().items():
            scale = scales.get(module, 1.0) if not prefix else 1.0
            if scale == 0:
                for param in params:
                    param.requires_grad_(False)
                continue
            decay = [p for p in params if id(p) not in no_decay_ids]
            no_decay = [p for p in params if id(p) in no_decay_ids]
            for suffix, members, weight_decay in (("", decay, config.weight_decay), ("/no_decay", no_decay, 0.0)):
                if members:
                    groups.append(
                        {
                            "name": prefix + module + suffix,
                            "params": members,
                            "lr": config.lr * scale,
                            "weight_decay": weight_decay,
                        }
                    )
    if not groups:
        raise ValueError("nothing to train: every module is frozen (all lr_scales are 0 or modules are frozen)")
    return AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def build_scheduler(optimizer: Optimizer, config: TrainConfig) -> LambdaLR:
    """Warmup + cosine on every group (keeping the per-module ratios); call ``step()`` once per optimizer step."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, config))
