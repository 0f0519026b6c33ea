"""Data collection with the scripted experts (MetaWorld's, aimed as :mod:`vlajepa.envs.experts` says).

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
import multiprocessing.util as mp_util
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vlajepa.constants import ACTION, DONE, OBS_ENV_STATE, OBS_STATE, PROGRESS, REWARD, SUCCESS, camera_setting
from vlajepa.data.video_io import video_quality

ATTEMPT_STRIDE = 100_000  # seeds of different tasks never overlap for fewer attempts than this


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    tasks: MetaWorld task names.
    episodes_per_task: successful episodes kept per task.
    image_size: square camera resolution.
    camera: camera name, or a tuple of names to record every one as its own video feature (robot data; the video
        set films the first); ``None``: the environment default.
    seed: base seed; collection seeds start here (evaluation uses a disjoint range).
    workers: worker processes.
    domain_shift: film with the action-free domain shift (arm hidden/recoloured, moving camera, random scene).
    max_attempt_factor: give up on a task after ``ceil(factor * episodes_per_task) + 5`` attempts.
    paraphrases: caption a task's kept episodes with the canonical instruction and the training paraphrases in turn
        (:func:`vlajepa.envs.language.training_caption`) instead of always the canonical instruction.
    action_noise: DART-style noise injection (Laskey et al. 2017): the environment executes the expert's action plus
        Gaussian noise of this standard deviation (actions live in [-1, 1]), while the dataset records the expert's
        clean action at every visited state. The demonstrations then cover the small drifts a learned policy makes
        and label how the expert corrects them; 0 records the expert's own trajectories. Seeded per attempt.
    environment_state: also record ``observation.environment_state`` (object and goal xyz from the simulator,
        :data:`vlajepa.envs.state.ENVIRONMENT_STATE_NAMES`) as data for analyses; no policy reads it.
    still_camera: with ``domain_shift``, film each episode from its (randomly moved) viewpoint without the slow
        drift and per-frame shake: the change between frames is then the scene's own motion, which a world model can
        learn to predict, instead of mostly random camera motion, which it cannot.
    arm: with ``domain_shift``, how the arm looks (:class:`vlajepa.envs.DomainShift`): ``hidden`` (only the gripper
        is drawn, like a human hand), ``recolored`` (a random colour per episode) or ``visible``.
    video_quality: how frames are stored, a :data:`vlajepa.data.video_io.VIDEO_QUALITIES` name: ``lossless``
        (decoded frames equal the renders evaluation shows the policy, up to colour rounding) or ``lerobot``
        (LeRobot's AV1 default, which at 96 px blurs small objects the policy must locate).
    """

    tasks: tuple[str, ...]
    episodes_per_task: int = 10
    image_size: int = 96
    camera: str | tuple[str, ...] | None = None
    seed: int = 0
    workers: int = 2
    domain_shift: bool = False
    max_attempt_factor: float = 2.0
    paraphrases: bool = True
    action_noise: float = 0.0
    environment_state: bool = False
    video_quality: str = "lossless"
    still_camera: bool = False
    arm: str = "hidden"

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", camera_setting(self.camera))
        video_quality(self.video_quality)
        if not (math.isfinite(self.action_noise) and self.action_noise >= 0.0):
            raise ValueError(f"action_noise must be a finite number >= 0, got {self.action_noise}")
        if self.still_camera and not self.domain_shift:
            raise ValueError("still_camera applies to domain-shifted video only (the robot data's camera is still)")
        if self.arm != "hidden" and not self.domain_shift:
            raise ValueError("arm applies to domain-shifted video only (the robot data show the robot's own arm)")


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
    """One recorded episode: ``images`` maps each camera's observation key to its frames [T, H, W, 3] uint8 (in
    camera order), ``state`` [T, S], ``action`` [T, 4] float32, what each
    executed action led to (``reward`` float32 [T], ``reached`` bool [T]: success after the step), the task
    ``progress`` of each frame's observation (float32 [T]), and ``environment_state`` [T, 9] float32 when the
    collection records it."""

    attempt: Attempt
    success: bool
    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    reached: np.ndarray
    progress: np.ndarray
    instruction: str
    fps: float
    environment_state: np.ndarray | None = None


# One environment per (task, rendering options) per process, reused across attempts: creating a MetaWorld env
# costs about as much as a whole demonstration, and reset(seed) fully determines an episode.
_ENVS: dict[tuple, object] = {}


def _env_for(attempt: Attempt):
    from vlajepa.envs import DomainShift, MetaWorldEnv

    config = attempt.config
    key = (
        attempt.task, config.image_size, config.camera, config.domain_shift, config.still_camera, config.arm,
        config.seed,
    )
    if key not in _ENVS:
        kwargs = {"image_size": config.image_size}
        if config.camera is not None:
            kwargs["camera"] = config.camera
        if config.domain_shift:
            motion = {"camera_drift_deg": 0.0, "camera_jitter_deg": 0.0} if config.still_camera else {}
            # each episode draws its own look from its seed
            kwargs["domain_shift"] = DomainShift(seed=config.seed, arm=config.arm, **motion)
        _ENVS[key] = MetaWorldEnv(attempt.task, **kwargs)
    return _ENVS[key]


def close_envs() -> None:
    """Close this process's cached environments (EGL complains at exit otherwise)."""
    while _ENVS:
        _, env = _ENVS.popitem()
        env.close()


def run_attempt(attempt: Attempt) -> Episode:
    """Roll the scripted expert out once and record every step (observation at t, expert action at t).

    With ``action_noise`` the executed action is the expert's plus seeded Gaussian noise, clipped to [-1, 1]; the
    recorded one stays the expert's (the label of the state the noisy rollout reached).
    """
    env = _env_for(attempt)
    obs, info = env.reset(seed=attempt.seed)
    noise_rng = np.random.default_rng([attempt.seed, 1])
    images: dict[str, list[np.ndarray]] = {key: [] for key in env.image_keys}
    states, actions, scene, rewards, reached, progress = [], [], [], [], [], []
    success = False
    for _ in range(env.max_steps):
        action = env.expert_action()
        for key, frames in images.items():
            frames.append(obs[key])
        states.append(obs[OBS_STATE])
        progress.append(info["progress"])
        if attempt.config.environment_state:
            scene.append(env.environment_state())
        actions.append(action)
        if attempt.config.action_noise > 0.0:
            noise = noise_rng.normal(0.0, attempt.config.action_noise, size=np.shape(action))
            action = np.clip(action + noise, -1.0, 1.0)
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        reached.append(info["success"])
        if info["success"]:
            success = True
            break
        if terminated or truncated:
            break
    return Episode(
        attempt=attempt,
        success=success,
        images={key: np.stack(frames) for key, frames in images.items()},
        state=np.stack(states).astype(np.float32),
        action=np.clip(np.stack(actions), -1.0, 1.0).astype(np.float32),
        reward=np.asarray(rewards, dtype=np.float32),
        reached=np.asarray(reached, dtype=bool),
        progress=np.asarray(progress, dtype=np.float32),
        instruction=env.instruction,
        fps=env.render_fps,
        environment_state=np.stack(scene) if scene else None,
    )


def _worker_init() -> None:
    os.environ["LP_NUM_THREADS"] = "1"
    # Runs when the worker exits normally (pool.close + join), closing its simulators cleanly.
    mp_util.Finalize(None, close_envs, exitpriority=10)


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
    does not depend on scheduling. With ``paraphrases`` the k-th kept episode of a task is captioned
    ``training_caption(task, k)``, so the captions cover every phrasing evenly whatever the episode count.
    """
    from vlajepa.envs.language import training_caption

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
                if config.paraphrases:
                    episode.instruction = training_caption(episode.attempt.task, kept[episode.attempt.task])
                need[i] -= 1
                kept[episode.attempt.task] += 1
                bar.update(1)
                yield episode
    except BaseException:
        if pool is not None:
            pool.terminate()  # an error or Ctrl-C: stop the workers now, the .partial output is discarded
        raise
    else:
        if pool is not None:
            pool.close()  # a clean exit lets each worker close its simulators
            pool.join()
    finally:
        bar.close()
        if pool is None:
            close_envs()
    yield CollectSummary(kept, dropped, time.perf_counter() - start_time)


def collection_provenance(config: CollectConfig) -> dict[str, Any]:
    """How a collection run made its data, for the written dataset's metadata: the collection options (not the
    worker count, which does not change the output), the seed rule and the caption rule. The writer adds
    ``episode_seeds``, the seed of every kept episode in episode order, so each one can be replayed."""
    from vlajepa import __version__
    from vlajepa.envs.experts import expert_provenance

    options = {name: value for name, value in asdict(config).items() if name != "workers"}
    return {
        "collector": f"vlajepa {__version__}",
        "expert": expert_provenance(),
        **options,
        "episode_seed": f"seed + {ATTEMPT_STRIDE} * task_index + attempt",
        "captions": (
            "vlajepa.envs.language.training_caption(task, k) for the k-th kept episode of a task"
            if config.paraphrases
            else "the canonical instruction"
        ),
    }


def _write_episodes(config: CollectConfig, open_writer, add, progress: bool) -> CollectSummary:
    """Stream kept episodes into a writer made from the first one and the run's provenance; abort it (no output)
    on any error."""
    writer = None
    seeds: list[int] = []
    try:
        for item in iter_successful_episodes(config, progress):
            if isinstance(item, CollectSummary):
                if writer is None:
                    raise RuntimeError("no episodes were collected")
                writer.provenance["episode_seeds"] = seeds
                writer.finalize()
                return item
            writer = writer or open_writer(item, collection_provenance(config))
            add(writer, item)
            seeds.append(item.attempt.seed)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    raise AssertionError("iter_successful_episodes ended without a summary")


def collect_robot_dataset(config: CollectConfig, root: str | Path, progress: bool = True) -> CollectSummary:
    """Collect scripted-expert demonstrations into a LeRobot v3 dataset at ``root``."""
    from vlajepa.data.lerobot_writer import LeRobotDatasetWriter

    def open_writer(first: Episode, provenance: dict[str, Any]) -> LeRobotDatasetWriter:
        features = robot_features(
            {key: frames.shape[1:] for key, frames in first.images.items()}, first.action.shape[1:],
            config.environment_state,
        )
        encoding = video_quality(config.video_quality)
        return LeRobotDatasetWriter(
            root, fps=first.fps, features=features, robot_type="sawyer", provenance=provenance,
            codec=encoding.codec, crf=encoding.crf, pix_fmt=encoding.pix_fmt,
        )

    def add(writer: LeRobotDatasetWriter, episode: Episode) -> None:
        frames = robot_frames(
            episode.images, episode.state, episode.action, episode.reward, episode.reached, episode.progress
        )
        if episode.environment_state is not None:
            frames[OBS_ENV_STATE] = episode.environment_state
        writer.add_episode(frames, task=episode.instruction)

    return _write_episodes(config, open_writer, add, progress)


def collect_video_set(config: CollectConfig, root: str | Path, progress: bool = True) -> CollectSummary:
    """Collect an action-free, domain-shifted video set (mp4 + captions CSV) at ``root``, filmed by the first
    camera."""
    from vlajepa.data.videos import VideoSetWriter

    def open_writer(first: Episode, provenance: dict[str, Any]) -> VideoSetWriter:
        encoding = video_quality(config.video_quality)
        return VideoSetWriter(
            root, fps=first.fps, provenance=provenance, codec=encoding.codec, crf=encoding.crf,
            pix_fmt=encoding.pix_fmt,
        )

    def add(writer: VideoSetWriter, episode: Episode) -> None:
        writer.add_video(next(iter(episode.images.values())), text=episode.instruction, task=episode.attempt.task)

    return _write_episodes(config, open_writer, add, progress)


def robot_features(
    image_shapes: Mapping[str, Sequence[int]],
    action_shape: Sequence[int],
    environment_state: bool = False,
) -> dict:
    """LeRobot ``features`` for each camera (``image_shapes``: observation key -> (H, W, 3), one video feature
    each, in order), the proprioceptive state, the action, what each action led to
    (``next.reward``, ``next.success``, ``next.done``), the task ``progress`` of each frame and, with
    ``environment_state``, the simulator's object and goal positions. Datasets written before the outcome columns
    existed lack them and still load: readers and training windows ask only for the columns they use."""
    from vlajepa.envs.state import ENVIRONMENT_STATE_NAMES, STATE_NAMES

    names = list(STATE_NAMES)
    features = {
        **{
            key: {"dtype": "video", "shape": list(shape), "names": ["height", "width", "channels"]}
            for key, shape in image_shapes.items()
        },
        OBS_STATE: {"dtype": "float32", "shape": [len(names)], "names": names},
        ACTION: {"dtype": "float32", "shape": list(action_shape), "names": ["dx", "dy", "dz", "gripper"]},
        REWARD: {"dtype": "float32", "shape": [1], "names": None},
        SUCCESS: {"dtype": "bool", "shape": [1], "names": None},
        DONE: {"dtype": "bool", "shape": [1], "names": None},
        PROGRESS: {"dtype": "float32", "shape": [1], "names": None},
    }
    if environment_state:
        scene = list(ENVIRONMENT_STATE_NAMES)
        features[OBS_ENV_STATE] = {"dtype": "float32", "shape": [len(scene)], "names": scene}
    return features


def robot_frames(
    images: Mapping[str, np.ndarray],
    state: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    reached: np.ndarray,
    progress: np.ndarray,
) -> dict[str, np.ndarray]:
    """One episode's columns for :func:`robot_features` (``images``: observation key -> frames [T, H, W, 3]):
    ``reached[t]`` is success after frame ``t``'s action; the
    last frame is the episode's end (``next.done``)."""
    done = np.zeros(len(action), dtype=bool)
    done[-1] = True
    return {
        **images,
        OBS_STATE: np.asarray(state, dtype=np.float32),
        ACTION: np.asarray(action, dtype=np.float32),
        REWARD: np.asarray(reward, dtype=np.float32),
        SUCCESS: np.asarray(reached, dtype=bool),
        DONE: done,
        PROGRESS: np.asarray(progress, dtype=np.float32),
    }
