"""Policies the harness can build inside a worker process from a picklable :class:`PolicySpec`.

Workers cannot receive a live policy (models, sockets and simulators do not pickle well), so the harness sends a
spec — a kind plus keyword arguments — and each worker builds its own policy next to its own environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlajepa.eval.policy import Policy

POLICY_KINDS = ("expert", "random", "checkpoint", "remote")


@dataclass(frozen=True)
class PolicySpec:
    """How to build a policy in a worker.

    kind: one of ``POLICY_KINDS``.
    kwargs: keyword arguments for that kind (``checkpoint``: ``path`` and optional ``num_inference_steps``,
        ``noise_scale`` and ``scene_from``, a checkpoint whose scene-state read-out supplies the object and goal
        positions of a policy trained on the privileged state;
        ``remote``: ``url``; ``random``: ``seed``).
    name: the method name written in result rows (defaults to ``kind``).
    """

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r}; expected one of {POLICY_KINDS}")

    @property
    def method(self) -> str:
        return self.name or self.kind


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
        """Make the next episode's actions a function of (spec seed, episode seed) only."""
        self.rng = np.random.default_rng([self.seed, seed])

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(self.chunk_size, self.action_dim)).astype(np.float32)


def build_policy(spec: PolicySpec, env: Any) -> Policy:
    """Build the policy ``spec`` describes, bound to ``env`` where the kind needs it."""
    if spec.kind == "expert":
        return ExpertPolicy(env)
    if spec.kind == "random":
        return RandomPolicy(seed=int(spec.kwargs.get("seed", 0)))
    if spec.kind == "checkpoint":
        from vlajepa.policy import VLAJEPAPolicy

        sampling = {key: spec.kwargs[key] for key in ("num_inference_steps", "noise_scale") if key in spec.kwargs}
        policy = VLAJEPAPolicy.from_pretrained(spec.kwargs["path"], **sampling)  # absent: the policy's defaults
        if spec.kwargs.get("scene_from"):
            from vlajepa.policy import EstimatedScenePolicy

            return EstimatedScenePolicy(policy, VLAJEPAPolicy.from_pretrained(spec.kwargs["scene_from"]))
        return policy
    if spec.kind == "remote":
        from vlajepa.serve import RemotePolicy

        return RemotePolicy(spec.kwargs["url"])
    raise ValueError(f"unknown policy kind {spec.kind!r}")
