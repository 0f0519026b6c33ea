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
    """One planning step's candidates and choice (what a planner's ``plan(observation)`` returns).

    ``candidates``: ``(N, n_action_steps, A)`` float32 un-normalized chunks (the executed part); ``scores``:
    ``(N,)`` the planner's learned scores (None for a proposer without a score); ``best``: the index the planner
    executes.
    """

    candidates: np.ndarray
    scores: np.ndarray | None
    best: int


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
