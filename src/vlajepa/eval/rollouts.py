"""On-policy data: a policy's own rollouts, successes and failures alike, recorded as a LeRobot v3 robot dataset.

Demonstrations never show a bad outcome, so a world model or a progress score trained on them alone cannot tell a
bad action chunk from a good one. These rollouts can: every episode is kept, with the columns of the expert robot
data (:func:`vlajepa.collect.robot_features`: every camera the policy reads, state, the *executed* action,
``next.reward``, ``next.success``, ``next.done``, ``progress``) and the episode's success, setting and seed in the
episode table. The instruction is the one the policy saw. The data therefore load and train exactly like expert
data (``vlajepa train --robot DIR``).

Episodes run through the evaluation harness (:func:`vlajepa.eval.runner.iter_episodes`), so a rollout dataset's
episode ``e`` of task ``i`` is the episode an evaluation with the same seed would run. The default seed keeps them
apart from both the evaluation seeds and the expert collection's.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlajepa.checkpoint import CONFIG_FILE
from vlajepa.collect import robot_features, robot_frames
from vlajepa.data.video_io import video_quality
from vlajepa.eval.policies import PolicySource
from vlajepa.eval.runner import EpisodeResult, EvalConfig, iter_episodes

# Base seed of rollouts: episode e of task i resets with ROLLOUT_SEED + task_seed_stride * i + e, away from the
# evaluation seeds (1_000_000 + ...) and the expert collection's (0 + 100_000 * i + attempt).
ROLLOUT_SEED = 2_000_000


@dataclass
class RolloutSummary:
    """What a rollout collection produced: episodes and successes per ``(task, setting)``."""

    episodes: dict[tuple[str, str], int]
    successes: dict[tuple[str, str], int]
    frames: int
    wall_time_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "episodes": sum(self.episodes.values()),
            "successes": sum(self.successes.values()),
            "frames": self.frames,
            "per_task": [
                {"task": task, "setting": setting, "episodes": n, "successes": self.successes[(task, setting)]}
                for (task, setting), n in self.episodes.items()
            ],
            "wall_time_s": round(self.wall_time_s, 2),
        }


def policy_provenance(policy: PolicySource) -> dict[str, Any]:
    """The policy that acted: its source, and for a checkpoint the sha256 of its ``config.json``."""
    record: dict[str, Any] = {"kind": policy.kind, **{k: v for k, v in policy.kwargs.items() if v is not None}}
    if policy.kind == "checkpoint":
        config = Path(policy.kwargs["path"]) / CONFIG_FILE
        record["path"] = str(Path(policy.kwargs["path"]).resolve())
        record["config_sha256"] = hashlib.sha256(config.read_bytes()).hexdigest()
    return record


def rollout_provenance(policy: PolicySource, config: EvalConfig, video_quality_name: str) -> dict[str, Any]:
    from vlajepa import __version__

    return {
        "collector": f"vlajepa {__version__}",
        "data": "on-policy rollouts: every episode, successes and failures",
        "policy": policy_provenance(policy),
        "rollouts": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items() if k != "workers"},
        "video_quality": video_quality_name,
        "episode_seed": f"seed + {config.task_seed_stride} * task_index + episode",
        "action": "the executed action (the policy's, clipped to [-1, 1])",
    }


def collect_rollouts(
    policy: PolicySource,
    config: EvalConfig,
    root: str | Path,
    video_quality_name: str = "lossless",
    progress: bool = True,
) -> RolloutSummary:
    """Roll ``policy`` out under ``config`` (tasks, settings, episodes per task, seeds, workers) and write every
    episode into a LeRobot v3 dataset at ``root``. The dataset appears only when all episodes are written (it is
    built in ``<root>.partial``); an error or interruption leaves nothing that looks complete."""
    from vlajepa.data.lerobot_writer import LeRobotDatasetWriter

    encoding = video_quality(video_quality_name)
    start = time.perf_counter()
    episodes: Counter[tuple[str, str]] = Counter()
    successes: Counter[tuple[str, str]] = Counter()
    seeds: list[int] = []
    writer: LeRobotDatasetWriter | None = None
    try:
        for result in iter_episodes(policy, config, progress=progress, description=f"rollouts {policy.method}"):
            trajectory = result.trajectory
            if writer is None:
                features = robot_features(
                    {key: frames.shape[1:] for key, frames in trajectory.images.items()}, trajectory.action.shape[1:]
                )
                writer = LeRobotDatasetWriter(
                    root, fps=trajectory.fps, features=features, robot_type="sawyer",
                    provenance=rollout_provenance(policy, config, video_quality_name),
                    codec=encoding.codec, crf=encoding.crf, pix_fmt=encoding.pix_fmt,
                )
            frames = robot_frames(
                trajectory.images, trajectory.state, trajectory.action, trajectory.reward, trajectory.success,
                trajectory.progress,
            )
            writer.add_episode(frames, task=result.instruction, metadata=_episode_metadata(result))
            seeds.append(result.seed)
            episodes[(result.task, result.setting)] += 1
            successes[(result.task, result.setting)] += int(result.success)
        if writer is None:
            raise ValueError("no episodes to roll out (empty task or setting list, or zero episodes)")
        writer.provenance["episode_seeds"] = seeds
        writer.finalize()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    frames_written = writer.num_frames
    return RolloutSummary(dict(episodes), dict(successes), frames_written, time.perf_counter() - start)


def _episode_metadata(result: EpisodeResult) -> dict[str, Any]:
    """The episode table's extra columns: the outcome and where the episode came from."""
    return {"success": bool(result.success), "setting": result.setting, "episode_seed": int(result.seed)}

