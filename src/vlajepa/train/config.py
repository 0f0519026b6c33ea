"""Typed training configuration: the ``train:`` section of a YAML preset, saved as ``train_config.json`` with every
checkpoint (with the model's ``config.json``), so a run can be resumed or reproduced from its checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from vlajepa.config import ConfigError, JsonConfig

NormalizationMode = Literal["min_max", "quantile", "mean_std", "identity"]
# Fields a resumed run may change: they do not alter the sequence of losses (``steps`` changes the cosine schedule
# from the resumed step on, which is what extending a run means).
RUNTIME_FIELDS = (
    "steps",
    "num_workers",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard",
    "decode_cache_gb",
    "latent_cache_dir",
)


@dataclass(frozen=True)
class LearningRateScales:
    """Multipliers of the base learning rate per parameter group (``PreTrainedPolicy.get_optim_params``; these are
    VLA-JEPA's groups, a group not named here trains at the base rate); 0 freezes."""

    vision: float = 1.0  # student vision encoder (an EMA target follows it)
    language: float = 1.0  # instruction encoder (the frozen MiniLM has no trainable parameters)
    student: float = 1.0  # fusion transformer, queries and projections
    action_head: float = 1.0  # flow-matching DiT
    predictor: float = 1.0  # latent world model


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """One training run: data, recipe, optimizer, schedule, checkpoints and logging."""

    YAML_SECTION = "train"
    YAML_SECTION_REQUIRED = False  # a preset without a train: section means the defaults

    robot: str | None = None  # LeRobot v3 dataset with actions (None: no robot data)
    video: str | None = None  # action-free video set (None: no video)
    init_from: str | None = None  # checkpoint whose weights initialize the model (fine-tuning); None: scratch
    # encoder weights (`vlajepa pretrain-encoder`'s encoder.safetensors) that initialize the student's vision encoder
    # (and an EMA target's copy of it); None: random
    init_vision: str | None = None
    robot_actions: bool = True  # False: robot windows drop actions and train the world model only (pretraining)
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # windows per robot batch, per process
    video_batch_size: int | None = None  # windows per video batch, per process; None: batch_size
    robot_weight: float = 1.0  # mixture ratio robot:video = robot_weight:video_weight (in batches)
    video_weight: float = 1.0  # see robot_weight; a source without data gets weight 0
    batches_per_step: int = 1  # batches averaged into one optimizer step (2 with 1:1 = one robot + one video)
    lr: float = 3e-4  # peak learning rate (after warmup)
    lr_scales: LearningRateScales = field(default_factory=LearningRateScales)  # per-module lr multipliers
    weight_decay: float = 0.01  # AdamW decoupled decay, on weight matrices only (not biases, norms, embeddings)
    betas: tuple[float, ...] = (0.9, 0.95)  # AdamW moment decay rates
    eps: float = 1e-8  # AdamW denominator guard
    warmup_steps: int = 100  # linear warmup from 0 to lr over this many optimizer steps
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    augment_shift: int = 0  # random shift of the student's current image by up to this many pixels (0: off)
    # share of robot windows whose instruction is replaced by the empty string: the policy must then also tell the
    # task from the image, so an unfamiliar phrasing (the language perturbation) matters less; 0: off
    instruction_dropout: float = 0.0
    # checkpoints hold a moving average of the trained weights, with this maximum decay (vlajepa.train.weight_ema;
    # Diffusion Policy uses 0.9999); 0: the last optimizer iterate
    ema_weights: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward passes (accelerate mixed precision)
    seed: int = 0  # model initialization, data order, flow-matching noise
    checkpoint_every: int = 500  # optimizer steps between checkpoints (a final one is always written)
    keep_checkpoints: int = 2  # newest step checkpoints kept besides the final one (0: keep all)
    log_every: int = 10  # optimizer steps between metric lines (metrics.jsonl, TensorBoard)
    num_workers: int = 0  # DataLoader worker processes per training process
    decode_cache_gb: float = 4.0  # in-memory cache of decoded video per dataset (GiB)
    state_norm: NormalizationMode = "min_max"  # normalization of observation.state (saved with the checkpoint)
    action_norm: NormalizationMode = "min_max"  # normalization of actions (saved with the checkpoint)
    latent_cache: Literal["off", "memory", "disk"] = "disk"  # frozen target only: precomputed target latents
    latent_cache_dtype: Literal["float32", "float16"] = "float32"  # storage of cached latents
    latent_cache_dir: str | None = None  # disk cache folder; None: <out>/latent_cache
    tensorboard: bool = True  # also log to <out>/tensorboard when tensorboard is installed

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size", "batches_per_step", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if self.video_batch_size is not None and self.video_batch_size < 1:
            problems.append(f"video_batch_size={self.video_batch_size} must be >= 1")
        if self.robot_weight < 0 or self.video_weight < 0:
            problems.append("robot_weight and video_weight must be >= 0")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            problems.append("lr must be > 0, weight_decay and grad_clip >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas={self.betas} must be two values in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.warmup_steps < 0 or self.keep_checkpoints < 0 or self.num_workers < 0 or self.augment_shift < 0:
            problems.append("warmup_steps, keep_checkpoints, num_workers and augment_shift must be >= 0")
        if not 0 <= self.instruction_dropout <= 1:
            problems.append(f"instruction_dropout={self.instruction_dropout} must be in [0, 1]")
        if not 0 <= self.ema_weights < 1:
            problems.append(f"ema_weights={self.ema_weights} must be in [0, 1) (0: off)")
        if self.init_from and self.init_vision:
            problems.append("init_from and init_vision both initialize the vision encoder: give one")
        if any(scale < 0 for scale in dataclasses.astuple(self.lr_scales)):
            problems.append("lr_scales must be >= 0")
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems))

    @property
    def video_batch(self) -> int:
        return self.video_batch_size or self.batch_size

