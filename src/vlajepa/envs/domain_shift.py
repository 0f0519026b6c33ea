"""The domain shift of the action-free "human video" analog.

Videos of the same tasks filmed so they look unlike the robot data: the arm is hidden (only the gripper
shows, like a hand) or recoloured, the camera starts from a random nearby viewpoint and drifts and shakes
during the episode, and background and lighting are randomised. Everything is drawn per episode from a
generator seeded by ``(DomainShift.seed, episode seed)``. The scripted expert still acts; callers drop the
actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vlajepa.envs.perturbations import sample_background, sample_lighting, sample_view_change
from vlajepa.envs.scene import LightingChange, SurfaceLook, Vec3, ViewChange

ArmAppearance = Literal["hidden", "recolored", "visible"]


@dataclass(frozen=True)
class DomainShift:
    """How action-free videos differ from robot data."""

    arm: ArmAppearance = "hidden"  # "hidden": only the gripper is drawn; "recolored": random arm colour
    viewpoint_severity: int = 1  # static viewpoint change per episode, camera-perturbation scale (0 = off)
    camera_drift_deg: float = 10.0  # amplitude of a slow orbit of the camera over the episode (0 = off)
    camera_jitter_deg: float = 0.7  # std of per-frame camera shake (0 = off)
    randomize_background: bool = True  # random tints and textures of table, floor, walls and sky
    randomize_lighting: bool = True  # random brightness, colour and direction of the lights
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arm not in ("hidden", "recolored", "visible"):
            raise ValueError(f"DomainShift.arm must be 'hidden', 'recolored' or 'visible' (got {self.arm!r})")
        if self.viewpoint_severity not in (0, 1, 2, 3):
            raise ValueError(f"DomainShift.viewpoint_severity must be 0..3 (got {self.viewpoint_severity!r})")

    def plan(self, episode_seed: int, max_steps: int) -> DomainShiftPlan:
        """The concrete appearance and camera path of the episode reset with ``episode_seed``."""
        rng = np.random.default_rng([0x5EED, self.seed, episode_seed])
        view = sample_view_change(self.viewpoint_severity, rng) if self.viewpoint_severity else ViewChange()
        arm_color = tuple(float(v) for v in rng.uniform(0.1, 0.9, size=3))
        # Mild lighting changes only: strong dimming on top of a dark random background hides the task.
        lighting = sample_lighting(1, rng) if self.randomize_lighting else None
        background = sample_background(int(rng.integers(1, 4)), rng) if self.randomize_background else None
        frames = max_steps + 1
        phase, period = rng.uniform(0.0, 2.0 * math.pi, size=2), rng.uniform(80.0, 200.0, size=2)
        t = np.arange(frames)[:, None]
        drift = np.sin(2.0 * math.pi * t / period + phase) * self.camera_drift_deg * np.array([1.0, 0.4])
        jitter = rng.normal(0.0, self.camera_jitter_deg, size=(frames, 2)) * np.array([1.0, 0.6])
        return DomainShiftPlan(
            arm=self.arm,
            arm_color=arm_color,
            view=view,
            lighting=lighting,
            background=background,
            camera_path=(drift + jitter).astype(np.float64),
        )


@dataclass(frozen=True)
class DomainShiftPlan:
    """One episode's draw of a :class:`DomainShift`."""

    arm: ArmAppearance
    arm_color: Vec3
    view: ViewChange  # static viewpoint change for the whole episode
    lighting: LightingChange | None
    background: dict[str, SurfaceLook] | None
    camera_path: np.ndarray = field(compare=False)  # (frames, 2): azimuth, elevation offsets (degrees)

    def view_at(self, step: int) -> ViewChange:
        """The viewpoint change at frame ``step`` (0 = the reset frame)."""
        d_azimuth, d_elevation = self.camera_path[min(step, len(self.camera_path) - 1)]
        return ViewChange(
            d_azimuth=self.view.d_azimuth + float(d_azimuth),
            d_elevation=self.view.d_elevation + float(d_elevation),
            distance_scale=self.view.distance_scale,
            lookat_shift=self.view.lookat_shift,
            d_fovy=self.view.d_fovy,
        )
