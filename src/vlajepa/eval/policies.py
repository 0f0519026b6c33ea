"""Policies the harness can build inside a worker process from a picklable :class:`PolicySource`.

Workers cannot receive a live policy (models, sockets and simulators do not pickle well), so the harness sends a
source — a kind plus keyword arguments — and each worker builds its own policy next to its own environment. The
kinds are a table (:data:`POLICY_BUILDERS`), and a ``checkpoint`` is any registered policy: its saved ``type``
picks the class (:func:`vlajepa.policies.load_policy`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlajepa.policies.protocol import Policy


class ExpertPolicy:
    """MetaWorld's scripted expert as a policy: one action per call, read from the environment's true state.

    It is privileged (it sees the simulator state, not the image), which is what makes it an upper bound and a
    check that the harness and the environment agree about success.
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    def reset(self) -> None:
        pass

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        return np.asarray(self.env.expert_action(), dtype=np.float32)[None]


class RandomPolicy:
    """Uniform random actions in [-1, 1]: the floor any learned policy must beat."""

    def __init__(self, action_dim: int = 4, chunk_size: int = 1, seed: int = 0) -> None:
        self.action_dim = action_dim
        self.chunk_size = chunk_size
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def reseed(self, seed: int) -> None:
        """Make the next episode's actions a function of (source seed, episode seed) only."""
        self.rng = np.random.default_rng([self.seed, seed])

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(self.chunk_size, self.action_dim)).astype(np.float32)


def _checkpoint(kwargs: dict[str, Any], env: Any) -> Policy:
    from vlajepa.policies import load_policy

    options = {key: value for key, value in kwargs.items() if key != "path" and value is not None}
    return load_policy(kwargs["path"], **options)  # absent options: the policy's defaults


def _remote(kwargs: dict[str, Any], env: Any) -> Policy:
    from vlajepa.serve import RemotePolicy

    return RemotePolicy(kwargs["url"], api_key_file=kwargs.get("api_key_file"), ca_file=kwargs.get("ca_file"))


# kind -> builder(kwargs, env); ``checkpoint`` kwargs: ``path`` plus options of the policy's ``__init__`` (e.g.
# ``num_inference_steps``, ``noise_scale``); ``remote``: ``url`` and optional ``api_key_file``, ``ca_file`` (the key
# itself may come from $VLAJEPA_API_KEY, which worker processes inherit); ``random``: ``seed``.
POLICY_BUILDERS: dict[str, Callable[[dict[str, Any], Any], Policy]] = {
    "expert": lambda kwargs, env: ExpertPolicy(env),
    "random": lambda kwargs, env: RandomPolicy(seed=int(kwargs.get("seed", 0))),
    "checkpoint": _checkpoint,
    "remote": _remote,
}
POLICY_KINDS = tuple(POLICY_BUILDERS)


@dataclass(frozen=True)
class PolicySource:
    """Where a worker gets its policy: ``kind`` (one of :data:`POLICY_KINDS`), its keyword arguments, and the
    method name written in result rows (defaults to ``kind``)."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICY_BUILDERS:
            raise ValueError(f"unknown policy kind {self.kind!r}; expected one of {POLICY_KINDS}")

    @property
    def method(self) -> str:
        return self.name or self.kind


def build_policy(source: PolicySource, env: Any) -> Policy:
    """Build the policy ``source`` describes, bound to ``env`` where the kind needs it."""
    return POLICY_BUILDERS[source.kind](source.kwargs, env)
