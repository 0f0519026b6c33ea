"""What ``observation.state`` holds — the robot's proprioception — and the simulator's scene state.

``observation.state`` (the benchmark's observation) is what a real robot knows about itself: hand xyz and the
gripper opening. ``observation.environment_state`` (LeRobot's key) holds both objects' positions and the goal
position, read from the simulator: collection can record it as data (``vlajepa collect robot --environment-state``)
for analyses such as ``benchmarks/probe_features.py``; no policy reads it. Object orientations are left out: they
are nearly constant in the demonstrations. Importable without MuJoCo.
"""

from __future__ import annotations

import numpy as np

STATE_NAMES: tuple[str, ...] = ("x", "y", "z", "gripper")
ENVIRONMENT_STATE_NAMES: tuple[str, ...] = tuple(
    f"{part}_{axis}" for part in ("obj1", "obj2", "goal") for axis in "xyz"
)
# Indices into MetaWorld v3's 39-D observation: [0:18] this step (hand xyz, gripper, object 1 xyz + quaternion,
# object 2 xyz + quaternion), [18:36] the same for the previous step, [36:39] the goal (observable: MetaWorldEnv
# turns partial observability off).
_STATE_INDICES = np.r_[0:4]
_SCENE_INDICES = np.r_[4:7, 11:14, 36:39]


def _check_raw(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.shape != (39,):
        raise ValueError(f"expected MetaWorld's 39-D observation, got shape {raw.shape}")
    return raw


def state_from_raw(raw: np.ndarray) -> np.ndarray:
    """``observation.state`` (float32, :data:`STATE_NAMES`) from MetaWorld's raw 39-D observation."""
    return _check_raw(raw)[_STATE_INDICES].astype(np.float32)


def environment_state_from_raw(raw: np.ndarray) -> np.ndarray:
    """``observation.environment_state`` (float32, :data:`ENVIRONMENT_STATE_NAMES`) from the raw observation."""
    return _check_raw(raw)[_SCENE_INDICES].astype(np.float32)
