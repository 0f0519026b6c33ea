"""The policy interface the evaluation harness (and the policy server) drive.

A policy sees one observation at a time — a dict with LeRobot keys (``observation.images.<camera>`` uint8 HWC,
``observation.state`` float32, ``task`` str), no batch dimension — and answers with an action chunk ``[H, D]``
(float32, un-normalized, in the environment's action space). The caller executes the first
``n_action_steps`` actions of each chunk before asking again; ``reset`` is called at the start of every episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Policy(Protocol):
    """What the evaluation harness needs from a policy."""

    def reset(self) -> None:
        """Forget any per-episode state (called before each episode)."""

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        """Return an action chunk of shape ``[H, D]`` for one (unbatched) observation."""


@dataclass(frozen=True)
class Plan:
    """One planning step's proposals and choice, as a planner returns them from ``plan(observation)``.

    ``candidates``: ``(N, n_action_steps, A)`` float32 action chunks, un-normalized (in the environment's action
    space), the part of each proposal that would be executed before replanning. ``scores``: ``(N,)`` the planner's
    learned score of each candidate (higher is better), or None when the proposer does not score. ``best``: the
    index of the candidate the planner executes. A benchmark can re-rank the same candidates by other means (e.g.
    executing each in the simulator) and compare its choice with ``best``.
    """

    candidates: np.ndarray
    scores: np.ndarray | None
    best: int

    def __post_init__(self) -> None:
        candidates = np.asarray(self.candidates)
        if candidates.ndim != 3 or len(candidates) == 0:
            raise ValueError(f"Plan.candidates must be (N, n_action_steps, A) with N >= 1, got {candidates.shape}")
        if self.scores is not None and np.shape(self.scores) != (len(candidates),):
            raise ValueError(f"Plan.scores must have shape ({len(candidates)},), got {np.shape(self.scores)}")
        if not 0 <= int(self.best) < len(candidates):
            raise ValueError(f"Plan.best={self.best} is not a candidate index in [0, {len(candidates)})")

    @property
    def chunk(self) -> np.ndarray:
        """The chosen candidate's actions, ``(n_action_steps, A)``."""
        return self.candidates[self.best]


def seed_policy(policy: Policy, seed: int) -> None:
    """Seed one episode: numpy's and torch's global generators, then the policy's own ``reseed`` if it has one.

    The evaluation harness calls this before every episode and the policy server replays it per connection, so a
    policy's sampled noise (e.g. flow-matching initial noise) is the same in-process and served.
    """
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    reseed = getattr(policy, "reseed", None)
    if callable(reseed):
        reseed(seed)
