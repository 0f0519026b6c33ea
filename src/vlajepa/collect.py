"""Data collection with MetaWorld's scripted experts.

Two products:
- **robot demonstrations** (images, state, actions, instruction) written as a LeRobot v3 dataset, keeping only
  successful episodes;
- an **action-free video set** of the same tasks filmed with a domain shift (arm hidden or recoloured, moving camera,
  random background and lighting), written as mp4 files plus a captions CSV — the "human video" analog.

Episodes run in worker processes; the main process writes them in a fixed order, so the output is a function of the
seed alone, whatever the number of workers. Each attempt's seed is ``seed + 100_000 * task_index + attempt``; the
first ``episodes_per_task`` successful attempts of each task are kept. Writers build into a ``.partial`` folder and
rename it into place at the end, so an interrupted run never leaves a dataset that looks complete.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlajepa.constants import ACTION, OBS_STATE

ATTEMPT_STRIDE = 100_000  # seeds of different tasks never overlap for fewer attempts than this


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    tasks: MetaWorld task names.
    episodes_per_task: successful episodes kept per task.
    image_size: square camera resolution.
    camera: camera name (``None``: the environment default).
    seed: base seed; collection seeds start here (evaluation uses a disjoint range).
    workers: worker processes.
    domain_shift: film with the action-free domain shift (arm hidden/recoloured, moving camera, random scene).
    max_attempt_factor: give up on a task after ``ceil(factor * episodes_per_task) + 5`` attempts.
    paraphrases: caption each episode with a training paraphrase (seeded) instead of the canonical instruction.
    """

    tasks: tuple[str, ...]
    episodes_per_task: int = 10
    image_size: int = 96
    camera: str | None = None
    seed: int = 0
    workers: int = 2
    domain_shift: bool = False
    max_attempt_factor: float = 2.0
    paraphrases: bool = True


@dataclass(frozen=True)
class Attempt:
    task: str
    task_index: int
    attempt: int
    config: CollectConfig

    @property
    def seed(self) -> int:
        return self.config.seed + ATTEMPT_STRIDE * self.task_index + self.attempt


@dataclass
class Episode:
    """One recorded episode: ``images`` [T, H, W, 3] uint8, ``state`` [T, 4], ``action`` [T, 4] float32."""

    attempt: Attempt
    success: bool
    images: np.ndarray
    state: np.ndarray
    action: np.ndarray
    instruction: str
    image_key: str
    fps: float


def run_attempt(attempt: Attempt) -> Episode:
    """Roll the scripted expert out once and record every step (observation at t, action taken at t)."""
    from vlajepa.envs import DomainShift, MetaWorldEnv, instruction

    config = attempt.config
    kwargs = {"image_size": config.image_size}
    if config.camera is not None:
        kwargs["camera"] = config.camera
    if config.domain_shift:
        kwargs["domain_shift"] = DomainShift(seed=attempt.seed)
    env = MetaWorldEnv(attempt.task, **kwargs)
    try:
        obs, _ = env.reset(seed=attempt.seed)
        images, states, actions = [], [], []
        success = False
        for _ in range(env.max_steps):
            action = env.expert_action()
            images.append(obs[env.image_key])
            states.append(obs[OBS_STATE])
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            if info["success"]:
                success = True
                break
            if terminated or truncated:
                break
        text = env.instruction
        if config.paraphrases:
            text = instruction(attempt.task, "train", rng=np.random.default_rng(attempt.seed))
        return Episode(
            attempt=attempt,
            success=success,
            images=np.stack(images),
            state=np.stack(states).astype(np.float32),
            action=np.clip(np.stack(actions), -1.0, 1.0).astype(np.float32),
            instruction=text,
            image_key=env.image_key,
            fps=env.render_fps,
        )
    finally:
        env.close()


def _worker_init() -> None:
    os.environ["LP_NUM_THREADS"] = "1"


def _attempts(config: CollectConfig, task_index: int, start: int, count: int) -> list[Attempt]:
    task = config.tasks[task_index]
    return [Attempt(task, task_index, a, config) for a in range(start, start + count)]


@dataclass
class CollectSummary:
    """What a collection run produced."""

    kept: dict[str, int]
    dropped: dict[str, int]
    wall_time_s: float

    @property
    def episodes(self) -> int:
        return sum(self.kept.values())

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.episodes / self.wall_time_s if self.wall_time_s > 0 else 0.0


def iter_successful_episodes(config: CollectConfig, progress: bool = True) -> Iterator[Episode | CollectSummary]:
    """Yield the kept episodes in a deterministic order, then a :class:`CollectSummary`.

    Attempts are issued in rounds: a round asks every unfinished task for as many attempts as it still needs
    (plus a small margin for expert failures); ``imap`` returns them in submission order, so which episodes are kept
    does not depend on scheduling.
    """
    start_time = time.perf_counter()
    need = {i: config.episodes_per_task for i in range(len(config.tasks))}
    next_attempt = dict.fromkeys(need, 0)
    kept = {t: 0 for t in config.tasks}
    dropped = {t: 0 for t in config.tasks}
    limit = math.ceil(config.max_attempt_factor * config.episodes_per_task) + 5
    bar = tqdm(total=len(config.tasks) * config.episodes_per_task, desc="collect", unit="ep", disable=not progress)
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(config.workers, initializer=_worker_init) if config.workers > 1 else None
    try:
        while any(need.values()):
            batch: list[Attempt] = []
            for i, missing in need.items():
                if missing == 0:
                    continue
                if next_attempt[i] >= limit:
                    raise RuntimeError(
                        f"task {config.tasks[i]}: only {kept[config.tasks[i]]} successful expert episodes in "
                        f"{next_attempt[i]} attempts (wanted {config.episodes_per_task})"
                    )
                count = min(missing + max(1, missing // 10), limit - next_attempt[i])
                batch += _attempts(config, i, next_attempt[i], count)
                next_attempt[i] += count
            results = pool.imap(run_attempt, batch) if pool else map(run_attempt, batch)
            for episode in results:
                i = episode.attempt.task_index
                if need[i] == 0:
                    continue  # surplus attempt of a task that is already complete: not counted as dropped
                if not episode.success:
                    dropped[episode.attempt.task] += 1
                    continue
                need[i] -= 1
                kept[episode.attempt.task] += 1
                bar.update(1)
                yield episode
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    yield CollectSummary(kept, dropped, time.perf_counter() - start_time)


def collect_robot_dataset(config: CollectConfig, root: str | Path, progress: bool = True) -> CollectSummary:
    """Collect scripted-expert demonstrations into a LeRobot v3 dataset at ``root``."""
    from vlajepa.data.lerobot_writer import LeRobotDatasetWriter

    writer = None
    summary = None
    for item in iter_successful_episodes(config, progress):
        if isinstance(item, CollectSummary):
            summary = item
            break
        if writer is None:
            writer = LeRobotDatasetWriter(
                root,
                fps=item.fps,
                features=robot_features(item.image_key, item.images.shape[1:], item.state.shape[1:],
                                        item.action.shape[1:]),
                robot_type="sawyer",
            )
        writer.add_episode({item.image_key: item.images, OBS_STATE: item.state, ACTION: item.action},
                           task=item.instruction)
    assert summary is not None and writer is not None
    writer.finalize()
    return summary


def collect_video_set(config: CollectConfig, root: str | Path, progress: bool = True) -> CollectSummary:
    """Collect an action-free, domain-shifted video set (mp4 + captions CSV) at ``root``."""
    from vlajepa.data.videos import VideoSetWriter

    writer = None
    summary = None
    for item in iter_successful_episodes(config, progress):
        if isinstance(item, CollectSummary):
            summary = item
            break
        if writer is None:
            writer = VideoSetWriter(root, fps=item.fps)
        writer.add_video(item.images, text=item.instruction, task=item.attempt.task)
    assert summary is not None and writer is not None
    writer.finalize()
    return summary


def robot_features(image_key: str, image_shape: Sequence[int], state_shape: Sequence[int],
                   action_shape: Sequence[int]) -> dict:
    """LeRobot ``features`` for one camera, the 4-D state and the 4-D action."""
    return {
        image_key: {"dtype": "video", "shape": list(image_shape), "names": ["height", "width", "channels"]},
        OBS_STATE: {"dtype": "float32", "shape": list(state_shape), "names": ["x", "y", "z", "gripper"]},
        ACTION: {"dtype": "float32", "shape": list(action_shape), "names": ["dx", "dy", "dz", "gripper"]},
    }
