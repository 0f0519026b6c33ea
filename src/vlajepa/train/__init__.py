"""Training: one :class:`Trainer` for every recipe (BC, co-training, world-model pretraining, fine-tuning).

See :mod:`vlajepa.train.trainer` for the loop, :mod:`vlajepa.train.config` for the options (the ``train:`` section
of a YAML preset) and :mod:`vlajepa.train.checkpoints` for the checkpoint layout.
"""

from vlajepa.train.config import LearningRateScales, TrainConfig
from vlajepa.train.trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = ["LearningRateScales", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer"]
