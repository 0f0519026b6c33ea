"""Run one policy for many connections while keeping each connection's random state its own.

A flow-matching policy draws noise for every action chunk, so its answers depend on random state. For remote
results to equal in-process ones, every connection (a :class:`Session`) must see the random numbers it would
see if it had the policy to itself in a fresh process. The runner therefore keeps, per session, a snapshot of

- torch's and numpy's global generators (policies that draw from them), and
- the policy's own generator, if the policy exposes ``get_rng_state()`` / ``set_rng_state(state)``,

and swaps a session's snapshot in before each of its calls and back out after. Seeding is the evaluation
harness's own :func:`vlajepa.policies.protocol.seed_policy` (numpy, torch and ``policy.reseed`` if the policy has it),
applied to that session's state only. A new session starts from the
state captured right after the policy was loaded. A policy with a private generator but without those two
methods shares it among sessions: one client at a time, reseeded per episode (as the harness does), is still
reproducible; concurrent interleaved clients are not.

All calls must come from one thread (the server's inference thread): the global generators are process-wide
(the rest of the process finds them as it left them after each call).

Micro-batched calls (``predict_action_chunk_batch``) serve several sessions with one draw of random numbers,
so they run under a separate server-wide state and are not reproducible per session; serve with
``max_batch=1`` (the default) when exact reproducibility matters.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vlajepa.policies.protocol import seed_policy


@dataclass
class RngState:
    """Everything random a policy call may read: global torch and numpy generators, the policy's own."""

    torch_state: torch.Tensor
    numpy_state: tuple
    policy_state: Any = None


@dataclass
class Session:
    """One client connection's view of the policy."""

    id: int
    rng: RngState
    requests: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class PolicyRunner:
    """Calls a policy on behalf of sessions, each under its own random state (see the module docstring)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self._has_policy_rng = callable(getattr(policy, "get_rng_state", None)) and callable(
            getattr(policy, "set_rng_state", None)
        )
        self._ids = itertools.count(1)
        self._initial = self._capture()
        self._batch_rng = self._capture()

    @property
    def supports_batch(self) -> bool:
        """Whether the policy has ``predict_action_chunk_batch(list of observations) -> [B, H, D]``."""
        return callable(getattr(self.policy, "predict_action_chunk_batch", None))

    def new_session(self) -> Session:
        return Session(next(self._ids), self._copy(self._initial))

    def _capture(self) -> RngState:
        policy_state = self.policy.get_rng_state() if self._has_policy_rng else None
        return RngState(torch.get_rng_state(), np.random.get_state(), policy_state)

    @staticmethod
    def _copy(state: RngState) -> RngState:
        # A deep copy, not restore-and-capture: sessions are created on the event loop's thread while the
        # inference thread may be using the global generators.
        return copy.deepcopy(state)

    def _restore(self, state: RngState) -> None:
        torch.set_rng_state(state.torch_state)
        np.random.set_state(state.numpy_state)
        if self._has_policy_rng:
            self.policy.set_rng_state(state.policy_state)

    @contextmanager
    def _activated(self, rng: RngState) -> Iterator[None]:
        # The global generators are put back afterwards, so a server running in a thread of a bigger program
        # leaves that program's random streams as they were (outside the call itself).
        outer_torch, outer_numpy = torch.get_rng_state(), np.random.get_state()
        self._restore(rng)
        try:
            yield
        finally:
            captured = self._capture()
            rng.torch_state, rng.numpy_state, rng.policy_state = (
                captured.torch_state,
                captured.numpy_state,
                captured.policy_state,
            )
            torch.set_rng_state(outer_torch)
            np.random.set_state(outer_numpy)

    def reset(self, session: Session) -> None:
        """Start a new episode for ``session`` (the policy's ``reset``, under the session's state)."""
        with self._activated(session.rng):
            self.policy.reset()

    def reseed(self, session: Session, seed: int) -> None:
        """Seed ``session`` exactly as the evaluation harness seeds an in-process policy."""
        with self._activated(session.rng):
            seed_policy(self.policy, seed)

    def predict(self, session: Session, observation: dict[str, Any]) -> np.ndarray:
        """One action chunk ``[H, D]`` for one session."""
        session.requests += 1
        with self._activated(session.rng), torch.no_grad():
            actions = self.policy.predict_action_chunk(observation)
        return _as_actions(actions)

    def predict_batch(self, sessions: list[Session], observations: list[dict[str, Any]]) -> list[np.ndarray]:
        """Action chunks for several sessions in one forward pass (not reproducible per session)."""
        if len(observations) == 1:
            return [self.predict(sessions[0], observations[0])]
        for session in sessions:
            session.requests += 1
        with self._activated(self._batch_rng), torch.no_grad():
            actions = self.policy.predict_action_chunk_batch(observations)
        if len(actions) != len(observations):
            raise ValueError(f"the policy gave {len(actions)} chunks for {len(observations)} observations")
        return [_as_actions(chunk) for chunk in actions]


def _as_actions(actions: Any) -> np.ndarray:
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().numpy()
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2:
        raise ValueError(f"the policy returned actions of shape {actions.shape}; expected [H, D]")
    return actions
