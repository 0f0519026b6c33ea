"""What ``observation.state`` holds: the robot's proprioception, or the simulator's privileged object/goal state.

``proprio`` (the benchmark's observation, DESIGN.md §4) is what a real robot knows about itself: hand xyz and the
gripper opening. ``privileged`` adds what a camera-only policy has to infer from pixels: both objects' positions
and the goal position, read from the simulator. Object orientations are left out: they are nearly constant in the
demonstrations, so min-max normalization would blow their tiny test-time changes up.

``privileged`` is a diagnostic, never a benchmark setting: a policy trained on it shows how much of the
closed-loop failure is perception (finding the objects and the goal in a 96-pixel image) and how much is control.

The same object and goal positions, recorded apart from ``observation.state`` as LeRobot's
``observation.environment_state``, are a training-time label only (an auxiliary target of the student,
``model.environment_state_dim``): the policy's inputs stay the image, the hand state and the instruction.
Importable without MuJoCo.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

StateKind = Literal["proprio", "privileged"]
STATE_KINDS: tuple[str, ...] = ("proprio", "privileged")

_PROPRIO = ("x", "y", "z", "gripper")
_SCENE = tuple(f"{part}_{axis}" for part in ("obj1", "obj2", "goal") for axis in "xyz")
# kind -> (names, indices into MetaWorld v3's 39-D observation: [0:18] this step (hand xyz, gripper, object 1 xyz +
# quaternion, object 2 xyz + quaternion), [18:36] the same for the previous step, [36:39] the goal (observable:
# MetaWorldEnv turns partial observability off)).
_PROPRIO_INDICES = np.r_[0:4]
_SCENE_INDICES = np.r_[4:7, 11:14, 36:39]
_LAYOUT: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    "proprio": (_PROPRIO, _PROPRIO_INDICES),
    "privileged": (_PROPRIO + _SCENE, np.r_[_PROPRIO_INDICES, _SCENE_INDICES]),
}
ENVIRONMENT_STATE_NAMES: tuple[str, ...] = _SCENE  # observation.environment_state: object and goal xyz


def check_state_kind(kind: str) -> StateKind:
    if kind not in STATE_KINDS:
        raise ValueError(f"unknown state kind {kind!r}; expected one of {', '.join(STATE_KINDS)}")
    return kind  # type: ignore[return-value]


def state_names(kind: str) -> tuple[str, ...]:
    """Per-dimension names of ``observation.state`` (the LeRobot feature's ``names``)."""
    return _LAYOUT[check_state_kind(kind)][0]


def _check_raw(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.shape != (39,):
        raise ValueError(f"expected MetaWorld's 39-D observation, got shape {raw.shape}")
    return raw


def state_from_raw(raw: np.ndarray, kind: str) -> np.ndarray:
    """``observation.state`` (float32) from MetaWorld's raw 39-D observation."""
    return _check_raw(raw)[_LAYOUT[check_state_kind(kind)][1]].astype(np.float32)


def environment_state_from_raw(raw: np.ndarray) -> np.ndarray:
    """``observation.environment_state`` (float32, :data:`ENVIRONMENT_STATE_NAMES`) from the raw observation."""
    return _check_raw(raw)[_SCENE_INDICES].astype(np.float32)
