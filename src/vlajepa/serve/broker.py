"""Execute action chunks one step at a time, asking the policy for a new chunk only when the current one runs
out.

A robot control loop wants one action per tick; a chunked policy answers with ``H`` of them per (expensive)
call. The broker sits between the two, like openpi's ``ActionChunkBroker``, and works with any object
implementing the policy protocol (``vlajepa.policies.protocol.Policy``) — an in-process policy or a
:class:`RemotePolicy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlajepa.policies.protocol import Policy


class ActionChunkBroker:
    """``action = broker.select_action(obs)`` each tick; ``broker.reset()`` at each episode start."""

    def __init__(self, policy: Policy, n_action_steps: int | None = None) -> None:
        """``n_action_steps``: actions executed from each chunk before re-planning (None: the whole chunk)."""
        if n_action_steps is not None and n_action_steps < 1:
            raise ValueError(f"n_action_steps must be at least 1, got {n_action_steps}")
        self.policy = policy
        self.n_action_steps = n_action_steps
        self._chunk: np.ndarray | None = None
        self._step = 0

    def reset(self) -> None:
        """Drop the current chunk and reset the policy (call at the start of every episode)."""
        self.policy.reset()
        self._chunk = None
        self._step = 0

    @property
    def steps_left(self) -> int:
        """Actions of the current chunk still to execute before the next policy call."""
        if self._chunk is None:
            return 0
        return min(self.n_action_steps or len(self._chunk), len(self._chunk)) - self._step

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """The next action ``[D]``; calls the policy with ``observation`` when the chunk is exhausted."""
        if self.steps_left <= 0:
            chunk = np.asarray(self.policy.predict_action_chunk(observation), dtype=np.float32)
            if chunk.ndim != 2 or len(chunk) == 0:
                raise ValueError(f"the policy returned an action chunk of shape {chunk.shape}, not [H, D]")
            self._chunk, self._step = chunk, 0
        action = self._chunk[self._step]
        self._step += 1
        return action
