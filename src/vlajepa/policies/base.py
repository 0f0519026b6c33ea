"""The policy base class and registry: every policy (VLA-JEPA and BC, LAPA, the world-model planner)
is a :class:`PreTrainedPolicy` registered under its config's ``type``, so training, evaluation and serving drive
any of them without knowing which.

The contract (LeRobot's shape):

- training: ``forward(batch) -> (loss, logs)`` on a batch of training windows, ``get_optim_params()`` (named
  parameter groups for per-module learning rates), ``on_optimizer_step()`` (e.g. an EMA target's update);
- acting: ``reset()``, ``predict_action_chunk(observation) -> [n_action_steps, A]`` and ``select_action`` (one
  action at a time from a queue), on unbatched observations with LeRobot keys; inputs and outputs go through the
  policy's :class:`~vlajepa.policies.processing.Processor`, the one input/output pipeline;
- files: ``save_pretrained(dir)`` / ``from_pretrained(dir)``, Hugging-Face style: ``config.json`` (with ``type``
  and ``config_version``), ``model.safetensors`` (frozen modules referenced by the config, not copied) and
  ``normalization.json``. :func:`load_policy` opens any checkpoint and picks the class from the saved ``type``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from vlajepa.checkpoint import (
    CONFIG_FILE,
    NORMALIZATION_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_normalizer,
    load_safetensors,
    save_safetensors,
)
from vlajepa.config import ConfigError, PolicyConfig, read_json_file
from vlajepa.normalize import Normalizer
from vlajepa.policies.processing import Processor

logger = logging.getLogger(__name__)

_POLICIES: dict[str, type[PreTrainedPolicy]] = {}


class PreTrainedPolicy(nn.Module):
    """Base of every policy; see the module docstring for the contract.

    Subclasses set ``config_class`` (a registered :class:`~vlajepa.config.PolicyConfig` subclass) and implement
    ``forward`` and ``sample_actions``; they are registered by ``config_class.type`` when defined.
    """

    config_class: ClassVar[type[PolicyConfig]]

    def __init__(
        self, config: PolicyConfig, normalizer: Normalizer | None = None, *, n_action_steps: int | None = None
    ) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.normalizer = normalizer if normalizer is not None else Normalizer({})
        self.n_action_steps = n_action_steps or config.n_action_steps
        if not 1 <= self.n_action_steps <= config.chunk_size:
            raise ValueError(f"n_action_steps={self.n_action_steps} must be in [1, {config.chunk_size}]")
        self.processor = Processor(config, self.normalizer)
        self._queue: deque[np.ndarray] = deque()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        config_class = cls.__dict__.get("config_class")
        if config_class is not None:
            _POLICIES[config_class.type] = cls

    def set_normalizer(self, normalizer: Normalizer) -> None:
        """Use ``normalizer`` (the training data's statistics) for inputs and outputs from now on."""
        self.normalizer = normalizer
        self.processor = Processor(self.config, normalizer)

    @property
    def name(self) -> str:
        """The registered type, e.g. ``vla_jepa``."""
        return self.config.type

    @property
    def device(self) -> torch.device:
        parameter = next(self.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    # ------------------------------------------------------------------ training

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Training loss of a batch of windows and a dict of its parts (floats) for logging."""
        raise NotImplementedError

    def get_optim_params(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by named group (the trainer gives each group its learning-rate scale)."""
        return {"policy": [p for p in self.parameters() if p.requires_grad]}

    def on_optimizer_step(self) -> None:
        """Called by the trainer after every optimizer step (e.g. to move an EMA target)."""

    def frozen_target(self) -> nn.Module | None:
        """A frozen encoder whose outputs the trainer may precompute once per dataset (a latent cache); None when
        the policy has none."""
        return None

    def frozen_references(self) -> dict[str, Any]:
        """What checkpoints refer to instead of copying (frozen weights files, packages and their hashes); recorded
        in ``training_state.json``."""
        return {}

    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of frozen modules, which checkpoints reference (through the config) instead of
        copying."""
        return ()

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores: everything but frozen modules."""
        excluded = self.frozen_prefixes()
        return {k: v for k, v in self.state_dict().items() if not (excluded and k.startswith(excluded))}

    def load_checkpoint_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load :meth:`checkpoint_state_dict` output; ValueError naming missing, unexpected or mis-shaped keys."""
        expected = self.checkpoint_state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
        details = [
            f"{len(keys)} {label} (e.g. {keys[0]!r})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        ]
        if details:
            raise ValueError("weights do not match the config: " + ", ".join(details))
        self.load_state_dict(dict(state), strict=False)

    def load_matching_weights(self, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """Initialize from another checkpoint's weights where names and shapes match (fine-tuning a pretrained
        model, e.g. all but a BC model's world model); ValueError when shapes differ or nothing matches."""
        own = self.checkpoint_state_dict()
        shared = own.keys() & state.keys()
        wrong_shape = sorted(k for k in shared if own[k].shape != state[k].shape)
        if wrong_shape:
            raise ValueError(f"{len(wrong_shape)} weights have other shapes (e.g. {wrong_shape[0]!r})")
        if not shared:
            raise ValueError(f"no weight fits this {type(self).__name__}")
        self.load_state_dict({k: state[k] for k in shared}, strict=False)
        return {"loaded": len(shared), "not_in_checkpoint": sorted(own.keys() - state.keys())}

    # ------------------------------------------------------------------ acting

    def reset(self) -> None:
        """Drop actions queued from the previous episode."""
        self._queue.clear()

    def reseed(self, seed: int) -> None:
        """Restart the policy's own sampling noise from ``seed`` (the harness calls this per episode)."""

    def sample_actions(self, batch: Mapping[str, Any]) -> Tensor:
        """Normalized action chunks ``(b, H, A)`` for a preprocessed batch."""
        raise NotImplementedError

    def sample_candidates(
        self,
        batch: Mapping[str, Any],
        num_candidates: int,
        *,
        noise_scale: float = 1.0,
        include_deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(b, N, H, A)`` normalized candidate chunks per observation of a preprocessed batch (what a planner
        chooses among); policies that can propose override it."""
        raise NotImplementedError(f"a {type(self).__name__} cannot propose candidate chunks for a planner")

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        """Un-normalized actions ``[n_action_steps, A]`` (float32) for one unbatched observation."""
        return self.predict_action_chunk_batch([observation])[0]

    @torch.inference_mode()
    def predict_action_chunk_batch(self, observations: Sequence[dict[str, Any]]) -> np.ndarray:
        """Un-normalized actions ``[B, n_action_steps, A]`` for several observations in one forward pass."""
        batch = self.processor.preprocess(observations, self.device)
        return self.processor.postprocess(self.sample_actions(batch)[:, : self.n_action_steps])

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """One action ``[A]``, predicting a new chunk whenever the queue runs out."""
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(observation))
        return self._queue.popleft()

    # ------------------------------------------------------------------ files

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors``, ``normalization.json`` and, last (its presence marks a complete set),
        ``config.json`` atomically into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(directory / WEIGHTS_FILE, self.checkpoint_state_dict())
        self.normalizer.save(directory / NORMALIZATION_FILE)
        self.config.save_json(directory / CONFIG_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs: Any) -> PreTrainedPolicy:
        """Load a policy saved by :meth:`save_pretrained` or the trainer, in eval mode; ``kwargs`` go to
        ``__init__`` (e.g. ``n_action_steps``). Called on the base class, the saved ``type`` picks the class."""
        config = load_policy_config(directory)
        policy_cls = policy_class(config.type)
        if not issubclass(policy_cls, cls):
            raise CheckpointError(f"{directory}: a {policy_cls.__name__} checkpoint, not a {cls.__name__}")
        normalizer = load_normalizer(directory)
        policy = policy_cls(config, normalizer, **policy_cls.checkpoint_init_kwargs(config, directory), **kwargs)
        try:
            policy.load_checkpoint_state_dict(load_safetensors(Path(directory) / WEIGHTS_FILE))
        except ValueError as err:
            raise CheckpointError(f"{Path(directory) / WEIGHTS_FILE}: {err}") from err
        return policy.eval()

    @classmethod
    def checkpoint_init_kwargs(cls, config: PolicyConfig, directory: str | Path) -> dict[str, Any]:
        """Extra ``__init__`` arguments when loading ``directory`` (e.g. to skip a referenced file that is absent)."""
        return {}


def policy_class(name: str) -> type[PreTrainedPolicy]:
    """The policy class registered under ``name``."""
    import vlajepa.policies  # noqa: F401 - registers the built-in policies

    if name not in _POLICIES:
        raise ConfigError(f"unknown policy type {name!r}; known types: {', '.join(sorted(_POLICIES))}")
    return _POLICIES[name]


def registered_policies() -> tuple[str, ...]:
    import vlajepa.policies  # noqa: F401 - registers the built-in policies

    return tuple(sorted(_POLICIES))


def make_policy(config: PolicyConfig, normalizer: Normalizer | None = None, **kwargs: Any) -> PreTrainedPolicy:
    """A new (untrained) policy of the class ``config.type`` names."""
    return policy_class(config.type)(config, normalizer, **kwargs)


def load_policy_config(directory: str | Path) -> PolicyConfig:
    """The policy config of a checkpoint directory (any registered type, any supported config version)."""
    import vlajepa.policies  # noqa: F401 - registers the built-in policies

    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; not a checkpoint directory (expected {CONFIG_FILE}, {WEIGHTS_FILE}, "
            f"{NORMALIZATION_FILE})"
        )
    try:
        return PolicyConfig.from_json(read_json_file(path))
    except ConfigError as err:
        message = str(err)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}") from err


def load_policy(directory: str | Path, **kwargs: Any) -> PreTrainedPolicy:
    """Open any checkpoint: the class comes from the ``type`` in its ``config.json``."""
    if not Path(directory).exists():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    return PreTrainedPolicy.from_pretrained(directory, **kwargs)
