"""Evaluation harness: roll a policy out on MetaWorld tasks, in distribution and under perturbations.

Work is split into groups of episodes that share a (task, setting); each worker process builds one environment and
one policy per group, so the cost of creating a simulator is paid once per group, not per episode. Every episode's
seed is a function of the evaluation seed, the task and the episode number only — never of which worker ran it — so
results are the same for any number of workers, and the perturbed settings replay the same initial conditions as
the in-distribution one (paired comparison).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vlajepa.constants import OBS_STATE, camera_setting
from vlajepa.eval.policies import PolicySource, build_policy
from vlajepa.policies.protocol import Policy, seed_policy

ID_SETTING = "id"  # in-distribution: no perturbation


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    tasks: MetaWorld task names (``-v3``).
    settings: ``"id"`` and/or perturbation names from ``vlajepa.envs.PERTURBATIONS``.
    episodes: episodes per (task, setting) in distribution.
    perturbed_episodes: episodes per (task, setting) for perturbed settings (``None``: same as ``episodes``).
    severity: perturbation severity level used for every perturbed setting.
    image_size: square camera resolution in pixels.
    camera: camera name, or a tuple of names (``None``: the environment's default camera); every observation the
        policy gets holds one image per camera (``vlajepa eval`` passes a checkpoint's ``cameras``).
    n_action_steps: actions executed from each predicted chunk before asking again (``None``: the whole chunk).
    max_steps: episode step limit (``None``: the per-task table of ``vlajepa.envs``).
    workers: worker processes (1 runs in this process, useful for debugging).
    seed: base of the evaluation seeds; kept far from collection seeds so evaluation never replays training
        initial conditions.
    task_seed_stride: seed offset between consecutive tasks (episode ``e`` of task ``i`` resets with
        ``seed + task_seed_stride * i + e``); collection's stride replays its attempts, e.g. a memorization check.
    videos: rollouts saved as mp4 per (task, setting), the first episodes of each group.
    group_size: episodes per work unit (smaller balances load better, larger builds fewer environments).
    """

    tasks: tuple[str, ...]
    settings: tuple[str, ...] = (ID_SETTING,)
    episodes: int = 20
    perturbed_episodes: int | None = None
    severity: int = 2
    image_size: int = 96
    camera: str | tuple[str, ...] | None = None
    n_action_steps: int | None = None
    max_steps: int | None = None
    workers: int = 2
    seed: int = 1_000_000
    task_seed_stride: int = 10_000
    videos: int = 0
    group_size: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", camera_setting(self.camera))

    def episodes_for(self, setting: str) -> int:
        if setting == ID_SETTING or self.perturbed_episodes is None:
            return self.episodes
        return self.perturbed_episodes

    def episode_seed(self, task_index: int, episode: int) -> int:
        return self.seed + self.task_seed_stride * task_index + episode


@dataclass(frozen=True)
class Trajectory:
    """Every control step of a recorded episode, row ``t`` shaped like a LeRobot robot frame: the observation at
    ``t`` (``images``: each camera's observation key -> uint8 [T, H, W, 3], in camera order; ``state`` float32
    [T, S]) and its task ``progress`` (float32 [T]), the
    action executed at ``t`` (``action`` float32 [T, A], clipped to the action space as the environment executes
    it) and what that action led to (``reward`` float32 [T], ``success`` bool [T]). ``final_image`` is the
    observation after the last action, from the first camera: a video shows it, a dataset frame cannot (it has no
    action). ``fps`` is the control rate."""

    fps: float
    images: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    success: np.ndarray
    progress: np.ndarray
    final_image: np.ndarray


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one episode; ``trajectory`` when the caller keeps them (:func:`iter_episodes`), ``diagnostics``
    when the policy reports some (a ``episode_diagnostics() -> dict`` method, read after the episode)."""

    task: str
    setting: str
    seed: int
    success: bool
    length: int
    instruction: str
    total_reward: float = 0.0  # MetaWorld's dense reward summed over the episode: a fingerprint of the trajectory
    video: str | None = None
    trajectory: Trajectory | None = field(default=None, repr=False, compare=False)
    diagnostics: dict[str, Any] = field(default_factory=dict, compare=False)


# Wraps the policy a worker built around its environment, e.g. a benchmark's privileged selection over the
# policy's proposals; must pickle (a module-level function or a functools.partial of one).
PolicyAdapter = Callable[[Policy, Any], Policy]


@dataclass(frozen=True)
class _Group:
    policy: PolicySource
    task: str
    setting: str
    seeds: tuple[int, ...]
    record: tuple[bool, ...]
    config: EvalConfig
    video_dir: str | None = field(default=None)
    keep_trajectories: bool = False
    adapter: PolicyAdapter | None = None


def _make_env(group: _Group):
    from vlajepa.envs import MetaWorldEnv, Perturbation

    perturbation = None
    if group.setting != ID_SETTING:
        perturbation = Perturbation(group.setting, severity=group.config.severity, seed=group.config.seed)
    kwargs = {"image_size": group.config.image_size, "perturbation": perturbation}
    if group.config.camera is not None:
        kwargs["camera"] = group.config.camera
    if group.config.max_steps is not None:
        kwargs["max_steps"] = group.config.max_steps
    return MetaWorldEnv(group.task, **kwargs)


def run_episode(
    env, policy, seed: int, n_action_steps: int | None, record: bool
) -> tuple[bool, int, float, Trajectory | None]:
    """Run one episode; return (success, steps taken, summed reward, the recorded :class:`Trajectory` or None).

    ``record`` renders every observation and keeps every step (for videos and datasets); otherwise only the
    observations the policy reads are rendered."""
    obs, info = env.reset(seed=seed)
    seed_policy(policy, seed)
    policy.reset()
    low, high = env.action_space.low, env.action_space.high
    columns: dict[str, list] = {name: [] for name in ("state", "action", "reward", "success", "progress")}
    images: dict[str, list[np.ndarray]] = {key: [] for key in env.image_keys}
    steps, success, total_reward = 0, False, 0.0
    done = False
    while not done:
        chunk = np.asarray(policy.predict_action_chunk(obs), dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != env.action_space.shape[0] or len(chunk) == 0:
            raise ValueError(
                f"policy returned an action chunk of shape {chunk.shape}; expected [H, {env.action_space.shape[0]}]"
            )
        if not np.isfinite(chunk).all():
            raise ValueError(f"policy returned non-finite actions on task {env.task} (seed {seed})")
        executed = chunk[: n_action_steps or len(chunk)]
        for i, action in enumerate(executed):
            if record:
                for key, frames in images.items():
                    frames.append(obs[key])
                columns["state"].append(obs[OBS_STATE])
                columns["progress"].append(info["progress"])
                columns["action"].append(np.clip(action, low, high))
            # Only the observation after the chunk's last action is read (and every frame of a recorded episode).
            obs, reward, terminated, truncated, info = env.step(action, render=record or i == len(executed) - 1)
            steps += 1
            total_reward += float(reward)
            success = success or bool(info["success"])
            if record:
                columns["reward"].append(reward)
                columns["success"].append(bool(info["success"]))
            if terminated or truncated or success:
                done = True
                break
    trajectory = None
    if record:
        trajectory = Trajectory(
            fps=env.render_fps,
            images={key: np.stack(frames) for key, frames in images.items()},
            state=np.stack(columns["state"]).astype(np.float32),
            action=np.stack(columns["action"]).astype(np.float32),
            reward=np.asarray(columns["reward"], dtype=np.float32),
            success=np.asarray(columns["success"], dtype=bool),
            progress=np.asarray(columns["progress"], dtype=np.float32),
            final_image=obs[env.image_key],
        )
    return success, steps, total_reward, trajectory


def _run_group(group: _Group) -> list[EpisodeResult]:
    env = _make_env(group)
    try:
        policy = build_policy(group.policy, env)
        if group.adapter is not None:
            policy = group.adapter(policy, env)
        results = []
        for seed, record in zip(group.seeds, group.record, strict=True):
            keep = record or group.keep_trajectories
            success, length, total_reward, trajectory = run_episode(
                env, policy, seed, group.config.n_action_steps, keep
            )
            video = None
            if record and group.video_dir is not None:
                first = trajectory.images[env.image_key]  # videos show the first camera
                frames = np.concatenate([first, trajectory.final_image[None]])
                video = _save_video(frames, group, seed, env.render_fps)
            diagnostics = getattr(policy, "episode_diagnostics", None)
            results.append(
                EpisodeResult(
                    group.task, group.setting, seed, success, length, env.instruction, total_reward, video,
                    trajectory if group.keep_trajectories else None,
                    dict(diagnostics()) if callable(diagnostics) else {},
                )
            )
        return results
    finally:
        env.close()


def _save_video(frames: np.ndarray, group: _Group, seed: int, fps: float) -> str:
    from vlajepa.data.video_io import encode_video

    path = Path(group.video_dir) / f"{group.policy.method}_{group.task}_{group.setting}_{seed}.mp4"
    encode_video(frames, path, fps=fps, codec="libx264")
    return str(path)


def _worker_init() -> None:
    # One render thread and one torch thread per worker: the workers themselves use the cores.
    os.environ["LP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _groups(
    policy: PolicySource,
    config: EvalConfig,
    video_dir: str | None,
    keep_trajectories: bool = False,
    adapter: PolicyAdapter | None = None,
) -> Iterator[_Group]:
    for setting in config.settings:
        for task_index, task in enumerate(config.tasks):
            n = config.episodes_for(setting)
            for start in range(0, n, config.group_size):
                episodes = range(start, min(n, start + config.group_size))
                seeds = tuple(config.episode_seed(task_index, e) for e in episodes)
                record = tuple(e < config.videos for e in episodes)
                yield _Group(policy, task, setting, seeds, record, config, video_dir, keep_trajectories, adapter)


def _run_groups(groups: list[_Group], workers: int, ordered: bool) -> Iterator[list[EpisodeResult]]:
    """Each group's results, in submission order when ``ordered`` (else as workers finish)."""
    if workers <= 1:
        yield from map(_run_group, groups)
        return
    # Workers are spawned, not forked: a forked EGL context or torch thread pool is not safe to reuse.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, maxtasksperchild=None) as pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(_run_group, groups)


def _bar(groups: Iterable[_Group], description: str, progress: bool) -> tqdm:
    return tqdm(total=sum(len(g.seeds) for g in groups), desc=description, unit="ep", disable=not progress)


def evaluate(
    policy: PolicySource,
    config: EvalConfig,
    video_dir: str | Path | None = None,
    progress: bool = True,
    adapter: PolicyAdapter | None = None,
) -> tuple[list[EpisodeResult], float]:
    """Evaluate ``policy`` under ``config``; return the per-episode results (in a fixed order) and wall seconds.

    ``adapter`` wraps the policy each worker builds (see :data:`PolicyAdapter`)."""
    groups = list(_groups(policy, config, None if video_dir is None else str(video_dir), adapter=adapter))
    start = time.perf_counter()
    results: list[EpisodeResult] = []
    with _bar(groups, f"eval {policy.method}", progress) as bar:
        for group_results in _run_groups(groups, config.workers, ordered=False):
            results.extend(group_results)
            bar.update(len(group_results))
    order = {(s, t): i for i, (s, t) in enumerate((s, t) for s in config.settings for t in config.tasks)}
    results.sort(key=lambda r: (order[(r.setting, r.task)], r.seed))
    return results, time.perf_counter() - start


def iter_episodes(
    policy: PolicySource, config: EvalConfig, progress: bool = True, description: str = "rollouts"
) -> Iterator[EpisodeResult]:
    """Roll ``policy`` out like :func:`evaluate` and yield every episode with its :class:`Trajectory`, in a fixed
    order (setting, task, seed) whatever the number of workers; one group of episodes is held in memory at a time
    per worker."""
    groups = list(_groups(policy, config, None, keep_trajectories=True))
    with _bar(groups, description, progress) as bar:
        for group_results in _run_groups(groups, config.workers, ordered=True):
            for result in group_results:
                bar.update(1)
                yield result
