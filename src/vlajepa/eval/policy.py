"""The policy interface the evaluation harness (and the policy server) drive.

A policy sees one observation at a time — a dict with LeRobot keys (``observation.images.<camera>`` uint8 HWC,
``observation.state`` float32, ``task`` str), no batch dimension — and answers with an action chunk ``[H, D]``
(float32, un-normalized, in the environment's action space). The caller executes the first
``n_action_steps`` actions of each chunk before asking again; ``reset`` is called at the start of every episode.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """What the evaluation harness needs from a policy."""

    def reset(self) -> None:
        """Forget any per-episode state (called before each episode)."""

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        """Return an action chunk of shape ``[H, D]`` for one (unbatched) observation."""
