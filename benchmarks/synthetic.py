"""Synthetic inputs for benchmarks and tests: small datasets written in seconds without a simulator, and
untrained policy checkpoints of any config's size.

Frames show a coloured square moving over a gradient background (so consecutive frames differ and a world model
has something to predict); states and actions follow the square. Content is a function of the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlajepa.constants import ACTION, OBS_ENV_STATE, OBS_STATE, image_key

if TYPE_CHECKING:
    from vlajepa.config import PolicyConfig

TASKS = ("push the puck to the goal", "open the drawer", "press the button")  # canonical MT10 instructions
FPS = 10


def moving_square_frames(length: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``uint8 (length, size, size, 3)`` frames and the square's ``(length, 2)`` positions in ``[0, 1]``."""
    start, velocity = rng.uniform(0.2, 0.8, 2), rng.uniform(-0.04, 0.04, 2)
    positions = np.clip(start + velocity * np.arange(length)[:, None], 0.05, 0.95)
    ys, xs = np.mgrid[0:size, 0:size] / size
    background = np.stack([ys, xs, 1 - ys], axis=-1) * 0.5
    colour = rng.uniform(0.5, 1.0, 3)
    frames = np.repeat(background[None], length, axis=0)
    half = max(1, size // 8)
    for t, (y, x) in enumerate((positions * size).astype(int)):
        frames[t, max(0, y - half) : y + half, max(0, x - half) : x + half] = colour
    return (frames * 255).round().astype(np.uint8), positions


def write_robot_dataset(
    root: str | Path,
    lengths: Sequence[int] = (12, 9, 15),
    *,
    size: int = 32,
    camera: str = "corner2",
    seed: int = 0,
    codec: str = "libx264",
    environment_state: bool = False,
    tasks: Sequence[str] = TASKS,
    provenance: dict | None = None,
) -> Path:
    """A LeRobot v3 dataset with one camera, a 4-D state and a 4-D action, one episode per length, captioned with
    ``tasks`` in turn; with ``environment_state`` also ``observation.environment_state``: the square's 2-D position
    (the "scene"); ``provenance`` as :class:`~vlajepa.data.lerobot_writer.LeRobotDatasetWriter`'s."""
    from vlajepa.data.lerobot_writer import LeRobotDatasetWriter

    rng = np.random.default_rng(seed)
    features = {
        image_key(camera): {"dtype": "video", "shape": [size, size, 3]},
        OBS_STATE: {"dtype": "float32", "shape": [4]},
        ACTION: {"dtype": "float32", "shape": [4]},
    }
    if environment_state:
        features[OBS_ENV_STATE] = {"dtype": "float32", "shape": [2]}
    with LeRobotDatasetWriter(root, FPS, features, codec=codec, provenance=provenance) as writer:
        for episode, length in enumerate(lengths):
            frames, positions = moving_square_frames(length, size, rng)
            state = np.concatenate([positions, rng.uniform(0, 1, (length, 2))], axis=1).astype(np.float32)
            action = np.concatenate([np.diff(positions, axis=0, append=positions[-1:]) * 10, state[:, 2:]], axis=1)
            frame = {image_key(camera): frames, OBS_STATE: state, ACTION: action.astype(np.float32)}
            if environment_state:
                frame[OBS_ENV_STATE] = positions.astype(np.float32)
            writer.add_episode(frame, task=tasks[episode % len(tasks)])
    return Path(root)


def write_video_set(
    root: str | Path,
    lengths: Sequence[int] = (10, 14),
    *,
    size: int = 32,
    seed: int = 1,
    codec: str = "libx264",
    provenance: dict | None = None,
) -> Path:
    """An action-free video set, one clip per length, captioned with the task texts; ``provenance`` as
    :class:`~vlajepa.data.videos.VideoSetWriter`'s."""
    from vlajepa.data.videos import VideoSetWriter

    rng = np.random.default_rng(seed)
    with VideoSetWriter(root, FPS, codec=codec, provenance=provenance) as writer:
        for clip, length in enumerate(lengths):
            frames, _ = moving_square_frames(length, size, rng)
            writer.add_video(frames, TASKS[clip % len(TASKS)])
    return Path(root)


def save_random_checkpoint(directory: str | Path, config: PolicyConfig, seed: int = 0) -> Path:
    """Write a randomly initialized checkpoint of the policy ``config.type`` names, for load benchmarks and tests.

    It has learned nothing but loads, serves and costs exactly what a trained one of ``config``'s size does.
    Normalization uses fixed, made-up statistics.
    """
    import torch

    from vlajepa.normalize import Normalizer
    from vlajepa.policies import make_policy

    torch.manual_seed(seed)
    stats = {
        OBS_STATE: {"mean": np.zeros(config.state_dim), "std": np.full(config.state_dim, 0.5)},
        ACTION: {"min": -np.ones(config.action_dim), "max": np.ones(config.action_dim)},
    }
    normalizer = Normalizer.from_stats(stats, {OBS_STATE: "mean_std", ACTION: "min_max"})
    return make_policy(config, normalizer, seed=seed).save_pretrained(directory)


LIBERO_CAMERAS = ("agentview", "wrist")  # the two views of LIBERO-shaped data


def write_libero_dataset(
    root: str | Path,
    lengths: Sequence[int] = (12, 9, 15),
    *,
    size: int = 32,
    seed: int = 0,
    codec: str = "libx264",
) -> Path:
    """A LeRobot v3 dataset in LIBERO's shape: two cameras (``agentview`` and ``wrist``, the wrist view a zoomed
    crop of the scene), an 8-D state (end-effector position 3, axis-angle 3, gripper 2) and a 7-D action (delta
    position 3, delta rotation 3, gripper 1), one episode per length."""
    from vlajepa.data.lerobot_writer import LeRobotDatasetWriter

    rng = np.random.default_rng(seed)
    features = {
        image_key(LIBERO_CAMERAS[0]): {"dtype": "video", "shape": [size, size, 3]},
        image_key(LIBERO_CAMERAS[1]): {"dtype": "video", "shape": [size, size, 3]},
        OBS_STATE: {"dtype": "float32", "shape": [8]},
        ACTION: {"dtype": "float32", "shape": [7]},
    }
    with LeRobotDatasetWriter(root, FPS, features, codec=codec) as writer:
        for episode, length in enumerate(lengths):
            frames, positions = moving_square_frames(length, size, rng)
            wide, _ = moving_square_frames(length, 2 * size, rng)
            wrist = wide[:, size // 2 : size // 2 + size, size // 2 : size // 2 + size]
            height = rng.uniform(0.0, 0.2, (length, 1))
            rotation = np.cumsum(rng.normal(0, 0.01, (length, 3)), axis=0)
            gripper = np.repeat(rng.uniform(0, 0.04, (length, 1)), 2, axis=1)
            state = np.concatenate([positions, height, rotation, gripper], axis=1).astype(np.float32)
            delta = np.diff(state[:, :6], axis=0, append=state[-1:, :6]) * 10
            close = (np.arange(length) > length // 2).astype(np.float32)[:, None] * 2 - 1
            action = np.concatenate([delta, close], axis=1).astype(np.float32)
            writer.add_episode(
                {image_key(LIBERO_CAMERAS[0]): frames, image_key(LIBERO_CAMERAS[1]): np.ascontiguousarray(wrist),
                 OBS_STATE: state, ACTION: action},  # fmt: skip
                task=TASKS[episode % len(TASKS)],
            )
    return Path(root)
