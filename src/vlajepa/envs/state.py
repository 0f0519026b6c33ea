"""What ``observation.state`` holds: the robot's proprioception, or the simulator's privileged object/goal state.

``proprio`` (the benchmark's observation, DESIGN.md §4) is what a real robot knows about itself: hand xyz and the
gripper opening. ``privileged`` adds what a camera-only policy has to infer from pixels: both objects' positions
and the goal position, read from the simulator. Object orientations are left out: they are nearly constant in the
demonstrations, so min-max normalization would blow their tiny test-time changes up.

``privileged`` is a diagnostic, never a benchmark setting: a policy trained on it shows how much of the
closed-loop failure is perception (finding the objects and the goal in a 96-pixel image) and how much is control.
Importable without MuJoCo.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

StateKind = Literal["proprio", "privileged"]
STATE_KINDS: tuple[str, ...] = ("proprio", "privileged")

_PROPRIO = ("x", "y", "z", "gripper")
_PRIVILEGED = (*_PROPRIO, *(f"{part}_{axis}" for part in ("obj1", "obj2", "goal") for axis in "xyz"))
# kind -> (names, indices into MetaWorld v3's 39-D observation: [0:18] this step (hand xyz, gripper, object 1 xyz +
# quaternion, object 2 xyz + quaternion), [18:36] the same for the previous step, [36:39] the goal (observable:
# MetaWorldEnv turns partial observability off)).
_LAYOUT: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
    "proprio": (_PROPRIO, np.r_[0:4]),
    "privileged": (_PRIVILEGED, np.r_[0:4, 4:7, 11:14, 36:39]),
}


def check_state_kind(kind: str) -> StateKind:
    if kind not in STATE_KINDS:
        raise ValueError(f"unknown state kind {kind!r}; expected one of {', '.join(STATE_KINDS)}")
    return kind  # type: ignore[return-value]


def state_names(kind: str) -> tuple[str, ...]:
    """Per-dimension names of ``observation.state`` (the LeRobot feature's ``names``)."""
    return _LAYOUT[check_state_kind(kind)][0]


def state_from_raw(raw: np.ndarray, kind: str) -> np.ndarray:
    """``observation.state`` (float32) from MetaWorld's raw 39-D observation."""
    raw = np.asarray(raw)
    if raw.shape != (39,):
        raise ValueError(f"expected MetaWorld's 39-D observation, got shape {raw.shape}")
    return raw[_LAYOUT[check_state_kind(kind)][1]].astype(np.float32)
