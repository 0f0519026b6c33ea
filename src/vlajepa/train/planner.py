"""Training the planner's world model and score (``vlajepa train-planner``) on top of a trained base policy.

Everything trains on latents: every frame of every dataset (demonstrations and the base policy's own rollouts,
``vlajepa collect rollouts``) is encoded once by the planner's frozen encoder (a disk latent cache keyed by the
encoder and the data, :mod:`vlajepa.data.latent_cache`), pooled and standardized, so a training step costs the
small predictor and score only.

A training window starts at frame ``t`` of an episode and holds the latents of frames ``t, t+s, ..., t+Ks``
(``K = world_model.max_steps``, ``s = frame_stride``; frames past the episode end are padding and leave the loss),
the ``Ks`` normalized actions executed from ``t`` (the last one repeated past the end), the instruction, and the
score targets of the frames: ``discount ** (steps until the episode's first success)`` for successful episodes
(1 from the success on), 0 for episodes that never succeed. Expert demonstrations without a ``next.success``
column count as succeeding at their last frame. Instructions are replaced by a training paraphrase of the same task
(``paraphrase_rate``) or by another task's (``score.wrong_instruction_rate``, targets 0): the score must read the
instruction, and held-out phrasings are never seen.

A deterministic tenth of each dataset's episodes is held out (never trained on) for :func:`diagnose_planner`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vlajepa.checkpoint import (
    CONFIG_FILE,
    NORMALIZATION_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_safetensors,
    save_safetensors,
)
from vlajepa.config import ConfigError, JsonConfig, PolicyConfig
from vlajepa.constants import ACTION, FUTURE_IS_PAD, FUTURE_LATENTS, FUTURE_VALUE, SUCCESS, TASK
from vlajepa.data.latent_cache import build_latent_cache
from vlajepa.data.windows import RobotWindows
from vlajepa.envs.language import LANGUAGE, task_of_instruction, training_instructions
from vlajepa.io_utils import atomic_write_json
from vlajepa.nn.predictor import pool_latents
from vlajepa.normalize import Normalizer
from vlajepa.policies.planning import PlannerConfig, PlannerHeads, PlannerPolicy
from vlajepa.train.config import TrainConfig
from vlajepa.train.metrics import MetricsLogger
from vlajepa.train.optim import build_optimizer, build_scheduler
from vlajepa.train.seeding import seed_everything

TRAINING_FILE = "planner_training.json"  # beside the planner checkpoint: data, held-out episodes, timings
DEFAULT_OPTIM = TrainConfig(steps=2000, batch_size=32, lr=5e-4)  # small models on cached latents: many cheap steps


@dataclass(frozen=True)
class PlannerTrainConfig(JsonConfig):
    """The planner's training stage: its data and optimization (the optimizer settings are a
    :class:`~vlajepa.train.config.TrainConfig`'s)."""

    YAML_SECTION = "planner_train"

    robot: tuple[str, ...] = ()  # expert LeRobot datasets
    rollouts: tuple[str, ...] = ()  # LeRobot datasets of the base policy's own episodes (with next.success)
    optim: TrainConfig = DEFAULT_OPTIM
    paraphrase_rate: float = 0.5  # share of windows whose instruction becomes a training paraphrase of its task
    holdout_every: int = 10  # every n-th episode of each dataset is held out (0: none)
    cache_dir: str | None = None  # latent cache folder (None: <out>/latent_cache)

    def __post_init__(self) -> None:
        problems = []
        if not self.robot and not self.rollouts:
            problems.append("robot / rollouts: give at least one dataset")
        if not 0.0 <= self.paraphrase_rate <= 1.0:
            problems.append(f"paraphrase_rate={self.paraphrase_rate} must be in [0, 1]")
        if self.holdout_every < 0 or self.holdout_every == 1:
            problems.append(f"holdout_every={self.holdout_every} must be 0 (none) or >= 2")
        if problems:
            raise ConfigError("invalid PlannerTrainConfig: " + "; ".join(problems))


@dataclass
class LatentEpisodes:
    """Every frame of one dataset as planner inputs: pooled latents ``(F, n, d)`` (standardized once the training
    statistics are known), normalized actions ``(F, A)``, and per episode its rows, instruction and success frame."""

    root: str
    latents: np.ndarray
    actions: np.ndarray
    starts: np.ndarray  # (E,) first row of each episode
    ends: np.ndarray  # (E,) one past its last row
    tasks: list[str]  # (E,) the instruction each episode was recorded with
    success_at: np.ndarray  # (E,) episode-relative frame of the first success, -1 if it never succeeds
    cache_key: str

    @property
    def num_episodes(self) -> int:
        return len(self.starts)

    def standardize(self, world_model: Any) -> None:
        """Standardize the latents in place with the world model's statistics (what it sees while planning)."""
        mean, std = world_model.latent_mean.numpy(), world_model.latent_std.numpy()
        self.latents = ((self.latents - mean) / std).astype(np.float32)

    def values(self, discount: float) -> np.ndarray:
        """``(F,)`` score targets of every frame (see the module docstring)."""
        values = np.zeros(len(self.latents), dtype=np.float32)
        for start, end, success in zip(self.starts, self.ends, self.success_at, strict=True):
            if success < 0:
                continue
            steps_left = np.maximum(success - np.arange(end - start), 0)
            values[start:end] = discount**steps_left
        return values


def load_latent_episodes(
    root: str | Path,
    planner: PlannerPolicy | PlannerHeads,
    normalizer: Normalizer,
    *,
    cache_dir: str | Path,
    demonstrations: bool,
    progress: bool = True,
) -> LatentEpisodes:
    """Encode (or reuse the cached latents of) every frame of the LeRobot dataset ``root`` with the planner's
    frozen encoder; actions are normalized with ``normalizer`` (the base policy's).

    ``demonstrations``: episodes without a ``next.success`` column succeed at their last frame (expert data);
    otherwise the column is required.
    """
    config, world_model = planner.config, planner.world_model
    windows = RobotWindows(root, config, normalizer=normalizer, future_images=False)
    cache = build_latent_cache(
        world_model.encoder,
        windows,
        name="robot" if demonstrations else "rollouts",  # a folder prefix; the key says what the latents are
        directory=cache_dir,
        progress=progress,
    )
    views, pool = len(config.cameras), config.world_model.latent_pool
    pooled = np.empty((len(cache), world_model.tokens_per_frame, world_model.latent_dim), np.float32)
    for first in range(0, len(cache), 1024):
        chunk = torch.from_numpy(np.array(cache.latents[first : first + 1024], dtype=np.float32))
        pooled[first : first + len(chunk)] = pool_latents(chunk[:, None], views, pool)[:, 0].numpy()
    dataset = windows.dataset
    actions = windows.normalizer.normalize(ACTION, torch.from_numpy(dataset.column(ACTION)).float()).numpy()
    episode_index = dataset.column("episode_index")
    boundaries = np.flatnonzero(np.diff(episode_index)) + 1
    starts = np.concatenate([[0], boundaries]).astype(np.int64)
    ends = np.concatenate([boundaries, [len(episode_index)]]).astype(np.int64)
    task_index = dataset.column("task_index")
    tasks = [dataset.meta.tasks[int(task_index[start])] for start in starts]
    if SUCCESS in dataset.features:
        success = dataset.column(SUCCESS).astype(bool).reshape(-1)
        success_at = np.array(
            [int(np.argmax(success[s:e])) if success[s:e].any() else -1 for s, e in zip(starts, ends, strict=True)]
        )
    elif demonstrations:
        success_at = ends - starts - 1
    else:
        raise ConfigError(
            f"{root}: rollout data needs a {SUCCESS!r} column (record it with `vlajepa collect rollouts`)"
        )
    return LatentEpisodes(str(root), pooled, actions, starts, ends, tasks, success_at, cache.key)


def held_out(episodes: LatentEpisodes, every: int) -> np.ndarray:
    """Boolean ``(E,)``: the episodes kept out of training (every ``every``-th, starting with the last of each
    block so that small datasets still train on their first episodes)."""
    mask = np.zeros(episodes.num_episodes, dtype=bool)
    if every:
        mask[every - 1 :: every] = True
    return mask


class WindowSampler:
    """Random training windows (latents, actions, values, instructions) from several :class:`LatentEpisodes`."""

    def __init__(
        self,
        data: Sequence[LatentEpisodes],
        masks: Sequence[np.ndarray],
        config: PlannerConfig,
        *,
        paraphrase_rate: float,
        wrong_instruction_rate: float,
        seed: int,
    ) -> None:
        self.data = list(data)
        self.config = config
        self.steps = config.world_model.max_steps
        self.stride = config.frame_stride
        self.paraphrase_rate = paraphrase_rate
        self.wrong_instruction_rate = wrong_instruction_rate
        self.values = [episodes.values(config.score.discount) for episodes in self.data]
        # (dataset, row) of every frame of the selected episodes, drawn uniformly
        rows = []
        for d, (episodes, mask) in enumerate(zip(self.data, masks, strict=True)):
            for e in np.flatnonzero(mask):
                frames = np.arange(episodes.starts[e], episodes.ends[e])
                rows.append(np.stack([np.full_like(frames, d), frames, np.full_like(frames, e)], axis=1))
        if not rows:
            raise ConfigError("no training episodes (every episode is held out); use more episodes")
        self.rows = np.concatenate(rows)
        self.rng = np.random.default_rng(seed)
        known = sorted({t for episodes in self.data for text in episodes.tasks if (t := task_of_instruction(text))})
        self.known_tasks = known

    def instruction(self, text: str) -> str:
        task = task_of_instruction(text)
        if task is not None and self.rng.random() < self.paraphrase_rate:
            choices = training_instructions(task)
            return choices[self.rng.integers(len(choices))]
        return text

    def wrong_instruction(self, text: str) -> str | None:
        """A training phrasing of another task in the data (None when the data names fewer than two tasks)."""
        task = task_of_instruction(text)
        others = [t for t in self.known_tasks if t != task]
        if not others:
            return None
        other = others[self.rng.integers(len(others))]
        choices = training_instructions(other)  # known tasks come from the instruction table
        return choices[self.rng.integers(len(choices))]

    def window(self, d: int, row: int, e: int) -> dict[str, Any]:
        episodes = self.data[d]
        end = int(episodes.ends[e])
        frames = row + self.stride * np.arange(self.steps + 1)
        is_pad = frames >= end
        frames = np.minimum(frames, end - 1)
        actions = np.minimum(row + np.arange(self.steps * self.stride), end - 1)
        return {
            FUTURE_LATENTS: episodes.latents[frames],
            ACTION: episodes.actions[actions],
            FUTURE_IS_PAD: is_pad,
            FUTURE_VALUE: self.values[d][frames],
            TASK: episodes.tasks[e],
        }

    def batch(self, size: int) -> dict[str, Any]:
        picks = self.rows[self.rng.integers(len(self.rows), size=size)]
        windows = [self.window(int(d), int(row), int(e)) for d, row, e in picks]
        texts = []
        values = np.stack([w[FUTURE_VALUE] for w in windows])
        for i, w in enumerate(windows):
            wrong = None
            if self.rng.random() < self.wrong_instruction_rate:
                wrong = self.wrong_instruction(w[TASK])
            if wrong is not None:
                texts.append(wrong)
                values[i] = 0.0
            else:
                texts.append(self.instruction(w[TASK]))
        return {
            FUTURE_LATENTS: torch.from_numpy(np.stack([w[FUTURE_LATENTS] for w in windows])),
            ACTION: torch.from_numpy(np.stack([w[ACTION] for w in windows])),
            FUTURE_IS_PAD: torch.from_numpy(np.stack([w[FUTURE_IS_PAD] for w in windows])),
            FUTURE_VALUE: torch.from_numpy(values),
            TASK: texts,
        }


def standardize(
    planner: PlannerPolicy | PlannerHeads, data: Sequence[LatentEpisodes], masks: Sequence[np.ndarray]
) -> None:
    """Set the world model's latent statistics from the training frames and standardize every dataset in place."""
    rows = [
        episodes.latents[
            np.concatenate([np.arange(s, e) for s, e in zip(episodes.starts[m], episodes.ends[m], strict=True)])
        ]
        for episodes, m in zip(data, masks, strict=True)
        if m.any()
    ]
    flat = np.concatenate([r.reshape(-1, r.shape[-1]) for r in rows])
    mean, std = flat.mean(0), flat.std(0) + 1e-4
    planner.world_model.latent_mean.copy_(torch.from_numpy(mean))
    planner.world_model.latent_std.copy_(torch.from_numpy(std))
    for episodes in data:
        episodes.standardize(planner.world_model)


def training_data(
    planner: PlannerPolicy | PlannerHeads,
    normalizer: Normalizer,
    train_config: PlannerTrainConfig,
    *,
    cache_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> tuple[list[LatentEpisodes], list[np.ndarray], WindowSampler]:
    """The datasets of ``train_config`` as latent episodes, standardized with statistics of their training episodes
    (set on ``planner``'s world model), each dataset's held-out mask, and the sampler of training windows."""
    data = [
        load_latent_episodes(root, planner, normalizer, cache_dir=cache_dir, demonstrations=True, progress=progress)
        for root in train_config.robot
    ] + [
        load_latent_episodes(root, planner, normalizer, cache_dir=cache_dir, demonstrations=False, progress=progress)
        for root in train_config.rollouts
    ]
    holdouts = [held_out(episodes, train_config.holdout_every) for episodes in data]
    train_masks = [~mask for mask in holdouts]
    standardize(planner, data, train_masks)
    sampler = WindowSampler(
        data,
        train_masks,
        planner.config,
        paraphrase_rate=train_config.paraphrase_rate,
        wrong_instruction_rate=planner.config.score.wrong_instruction_rate,
        seed=seed,
    )
    return data, holdouts, sampler


@dataclass
class PlannerTrainResult:
    checkpoint: Path
    steps: int
    wall_time_s: float
    final_logs: dict[str, float]


def train_planner(
    planner_config: PlannerConfig,
    train_config: PlannerTrainConfig,
    out: str | Path,
    *,
    progress: bool = True,
) -> PlannerTrainResult:
    """Train the world model and score of a new planner around ``planner_config.base_policy``; the planner
    checkpoint is written to ``out`` (``config.json`` last), with ``metrics.jsonl`` and ``planner_training.json``."""
    out = Path(out)
    optim = train_config.optim
    seed_everything(optim.seed)
    policy = PlannerPolicy(planner_config, seed=optim.seed)
    data, holdouts, sampler = training_data(
        policy,
        policy.normalizer,
        train_config,
        cache_dir=train_config.cache_dir or out / "latent_cache",
        seed=optim.seed,
        progress=progress,
    )

    policy.train()
    optimizer = build_optimizer(policy, optim)
    scheduler = build_scheduler(optimizer, optim)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    logger = MetricsLogger(out, tensorboard=False)
    window: dict[str, list[float]] = defaultdict(list)
    bar = tqdm(total=optim.steps, desc="train planner", unit="step", disable=not progress)
    started = time.perf_counter()
    logs: dict[str, float] = {}
    try:
        for step in range(1, optim.steps + 1):
            loss, logs = policy(sampler.batch(optim.batch_size))
            if not np.isfinite(logs["loss"]):
                raise FloatingPointError(f"step {step}: non-finite planner loss {logs}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, optim.grad_clip)
            optimizer.step()
            scheduler.step()
            for key, value in logs.items():
                window[key].append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}")
            if step % optim.log_every == 0 or step == optim.steps:
                logger.log(step, {key: float(np.mean(values)) for key, values in window.items()})
                window.clear()
    finally:
        bar.close()
        logger.close()
    wall = time.perf_counter() - started
    policy.eval()
    atomic_write_json(
        out / TRAINING_FILE,
        training_record(train_config, data, holdouts)
        | {"frozen": policy.frozen_references(), "steps": optim.steps, "wall_time_s": round(wall, 1)}
        | {"final_logs": logs},
    )
    policy.save_pretrained(out)  # config.json last: its presence marks a complete checkpoint
    return PlannerTrainResult(out, optim.steps, wall, logs)


def training_record(
    train_config: PlannerTrainConfig, data: Sequence[LatentEpisodes], holdouts: Sequence[np.ndarray]
) -> dict[str, Any]:
    """The data part of ``planner_training.json``: the config and, per dataset, its episodes and held-out ones
    (what :func:`diagnose_planner` reads back)."""
    return {
        "config": train_config.to_json(),
        "datasets": [
            {
                "root": episodes.root,
                "kind": "robot" if i < len(train_config.robot) else "rollouts",
                "episodes": episodes.num_episodes,
                "successful_episodes": int((episodes.success_at >= 0).sum()),
                "held_out": np.flatnonzero(mask).tolist(),
                "latent_cache": episodes.cache_key,
            }
            for i, (episodes, mask) in enumerate(zip(data, holdouts, strict=True))
        ],
    }


def read_training_record(directory: str | Path) -> dict[str, Any]:
    """``planner_training.json`` of a trained planner (its datasets and held-out episodes)."""
    path = Path(directory) / TRAINING_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a planner training record ({err})") from err


# ----------------------------------------------------------------------------------------------------------
# Diagnostics on held-out episodes
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def diagnose_world_model(policy: PlannerPolicy, sampler: WindowSampler, windows: int, seed: int = 0) -> dict[str, Any]:
    """Latent error of the world model's rollout at each horizon, against copying the current frame and against
    the same rollout with actions shuffled across windows (a world model that ignores actions cannot select)."""
    sampler.rng = np.random.default_rng(seed)
    batch = sampler.batch(windows)
    latents, actions, is_pad = batch[FUTURE_LATENTS], batch[ACTION], batch[FUTURE_IS_PAD]
    instruction = policy.world_model.instruction(batch[TASK])
    imagined = policy.world_model.imagine(latents[:, 0], actions, instruction)
    shuffled = policy.world_model.imagine(
        latents[:, 0], actions[torch.randperm(len(actions), generator=torch.Generator().manual_seed(seed))], instruction
    )
    target = latents[:, 1:]
    valid = ~is_pad[:, 1:]
    rows = []
    for k in range(target.shape[1]):
        keep = valid[:, k]

        def error(predicted: Tensor, k: int = k, keep: Tensor = keep) -> float:
            return float((predicted[keep] - target[keep, k]).abs().mean())

        rows.append(
            {
                "horizon_steps": k + 1,
                "windows": int(keep.sum()),
                "world_model": error(imagined[:, k]),
                "copy_current": error(latents[:, 0]),
                "shuffled_actions": error(shuffled[:, k]),
            }
        )
    return {"horizons": rows}


@torch.no_grad()
def score_frames(policy: PlannerPolicy, latents: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Scores (probabilities) of standardized latents ``(b, n, d)`` under instructions ``texts``."""
    instruction = policy.world_model.instruction(list(texts))
    return torch.sigmoid(policy.score(torch.from_numpy(np.asarray(latents)), instruction)).numpy()


def _phrasing(text: str, split: str, rng: np.random.Generator) -> str:
    task = task_of_instruction(text)
    if task is None or split == "recorded":
        return text
    options = (LANGUAGE[task].canonical,) if split == "canonical" else LANGUAGE[task].heldout
    return options[rng.integers(len(options))]


@torch.no_grad()
def diagnose_score(
    policy: PlannerPolicy,
    data: Sequence[LatentEpisodes],
    masks: Sequence[np.ndarray],
    *,
    pairs: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Ranking accuracy of the score on held-out episodes, on real latents and on latents the world model imagined
    (from the frame ``H`` steps earlier, with the real actions), under canonical and held-out phrasings:

    - ``later_over_earlier``: a later frame of a successful episode over an earlier one (at least one chunk apart);
    - ``success_over_failure``: the last frame of a successful episode over the last frame of a failed one;
    - ``right_over_wrong_instruction``: the same frame under its own task's instruction over another task's.
    """
    rng = np.random.default_rng(seed)
    stride, horizon = policy.config.frame_stride, policy.horizon_steps
    episodes = [(d, e) for d, mask in enumerate(masks) for e in np.flatnonzero(mask)]
    successful = [(d, e) for d, e in episodes if data[d].success_at[e] >= 0]
    failed = [(d, e) for d, e in episodes if data[d].success_at[e] < 0]
    known = sorted({task_of_instruction(data[d].tasks[e]) for d, e in episodes} - {None})

    def frame(d: int, e: int, offset: int, imagined: bool) -> np.ndarray:
        """Latents of frame ``offset`` of episode ``e``: real, or imagined from ``horizon`` steps earlier."""
        start, end = int(data[d].starts[e]), int(data[d].ends[e])
        row = start + min(offset, end - start - 1)
        if not imagined:
            return data[d].latents[row]
        origin = max(start, row - horizon * stride)
        actions = data[d].actions[np.minimum(origin + np.arange(horizon * stride), end - 1)]
        text = policy.world_model.instruction([data[d].tasks[e]])
        dream = policy.world_model.imagine(
            torch.from_numpy(data[d].latents[origin][None]), torch.from_numpy(actions[None]), text
        )
        return dream[0, -1].numpy()

    results: dict[str, Any] = {}
    for imagined in (False, True):
        for split in ("canonical", "heldout"):
            key = f"{'imagined' if imagined else 'real'}/{split}"
            metrics: dict[str, Any] = {}
            if successful:
                wins = []
                for _ in range(pairs):
                    d, e = successful[rng.integers(len(successful))]
                    length = int(data[d].success_at[e]) + 1
                    if length <= horizon * stride + 1:
                        continue
                    early = int(rng.integers(0, length - horizon * stride))
                    late = int(rng.integers(early + horizon * stride, length))
                    text = _phrasing(data[d].tasks[e], split, rng)
                    a, b = score_frames(
                        policy, np.stack([frame(d, e, early, imagined), frame(d, e, late, imagined)]), [text, text]
                    )
                    wins.append(float(b > a))
                metrics["later_over_earlier"] = {"accuracy": float(np.mean(wins)) if wins else None, "pairs": len(wins)}
            if successful and failed:
                wins = []
                for _ in range(pairs):
                    d1, e1 = successful[rng.integers(len(successful))]
                    d2, e2 = failed[rng.integers(len(failed))]
                    good = frame(d1, e1, int(data[d1].success_at[e1]), imagined)
                    bad = frame(d2, e2, int(data[d2].ends[e2] - data[d2].starts[e2]) - 1, imagined)
                    s_good = score_frames(policy, good[None], [_phrasing(data[d1].tasks[e1], split, rng)])[0]
                    s_bad = score_frames(policy, bad[None], [_phrasing(data[d2].tasks[e2], split, rng)])[0]
                    wins.append(float(s_good > s_bad))
                metrics["success_over_failure"] = {"accuracy": float(np.mean(wins)), "pairs": len(wins)}
            if len(known) > 1 and successful:
                wins = []
                for _ in range(pairs):
                    d, e = successful[rng.integers(len(successful))]
                    task = task_of_instruction(data[d].tasks[e])
                    if task is None:
                        continue
                    other = [t for t in known if t != task][rng.integers(len(known) - 1)]
                    right = _phrasing(LANGUAGE[task].canonical, split, rng)
                    wrong = _phrasing(LANGUAGE[other].canonical, split, rng)
                    latents = frame(d, e, int(data[d].success_at[e]), imagined)
                    s_right, s_wrong = score_frames(policy, np.stack([latents, latents]), [right, wrong])
                    wins.append(float(s_right > s_wrong))
                metrics["right_over_wrong_instruction"] = {
                    "accuracy": float(np.mean(wins)) if wins else None,
                    "pairs": len(wins),
                }
            results[key] = metrics
    return results


def diagnose_planner(
    directory: str | Path, *, windows: int = 512, pairs: int = 256, progress: bool = True, seed: int = 0
) -> dict[str, Any]:
    """World-model and score diagnostics of a trained planner on the episodes its training held out."""
    from vlajepa.policies import load_policy

    policy = load_policy(directory)
    if not isinstance(policy, PlannerPolicy):
        raise ConfigError(f"{directory}: a {type(policy).__name__} checkpoint, not a planner")
    record = read_training_record(directory)
    data, masks = [], []
    for entry in record["datasets"]:
        episodes = load_latent_episodes(
            entry["root"],
            policy,
            policy.normalizer,
            cache_dir=record["config"].get("cache_dir") or Path(directory) / "latent_cache",
            demonstrations=entry["kind"] == "robot",
            progress=progress,
        )
        episodes.standardize(policy.world_model)
        mask = np.zeros(episodes.num_episodes, dtype=bool)
        mask[entry["held_out"]] = True
        data.append(episodes)
        masks.append(mask)
    if not any(mask.any() for mask in masks):
        raise ConfigError(f"{directory}: its training held out no episodes (holdout_every=0)")
    sampler = WindowSampler(data, masks, policy.config, paraphrase_rate=0.0, wrong_instruction_rate=0.0, seed=seed)
    return {
        "world_model": diagnose_world_model(policy, sampler, windows, seed),
        "score": diagnose_score(policy, data, masks, pairs=pairs, seed=seed),
        "held_out_episodes": int(sum(mask.sum() for mask in masks)),
    }


def planner_config_for(base_policy: str | Path, **changes: Any) -> PlannerConfig:
    """A planner config around the checkpoint ``base_policy``: its observation/action interface, the planner's
    defaults, then ``changes`` (top-level fields; sub-configs as dicts or config objects)."""
    from vlajepa.policies import load_policy_config

    return planner_config_from(load_policy_config(base_policy), str(Path(base_policy).resolve()), **changes)


def planner_config_from(base: PolicyConfig, base_policy: str, **changes: Any) -> PlannerConfig:
    """A planner config with the observation/action interface of the policy config ``base``, the planner's
    defaults, then ``changes``; ``base_policy`` is the reference written into it."""
    shared = {name: getattr(base, name) for name in (f.name for f in dataclasses.fields(PolicyConfig))}
    data = PlannerConfig(base_policy=base_policy, **shared).to_dict()
    for name, value in changes.items():
        if name not in data:
            raise ConfigError(f"unknown planner field {name!r}; known: {', '.join(data)}")
        data[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return PlannerConfig.from_dict(data)


# ----------------------------------------------------------------------------------------------------------
# Inside a policy's training run
# ----------------------------------------------------------------------------------------------------------

PLANNER_DIR = "planner"  # inside every checkpoint of a run trained with `vlajepa train --planner`
CO_TRAINED_BASE = ".."  # a co-trained planner's base policy: the checkpoint folder that holds it


class PlannerCoTraining:
    """The planner's world model and score trained inside a policy's own run (``vlajepa train --planner``).

    Each optimizer step adds one planner batch, drawn from the run's robot dataset as ``vlajepa train-planner``
    draws them (same windows, paraphrases, wrong-instruction negatives and held-out tenth of the episodes), to the
    policy's batches; the planner's parameters are separate from the policy's and clipped separately, and its
    sampler has its own random stream, so the policy trains exactly as it would alone. Every checkpoint gets a
    planner in ``<checkpoint>/planner`` whose ``base_policy`` is ``..``: that very checkpoint. Demonstrations
    show no failures, so its score has only demo progress and other tasks' instructions to learn from; the
    separate stage (``vlajepa train-planner``) can add the trained policy's own rollouts afterwards.
    """

    def __init__(
        self,
        config: PlannerConfig,
        robot: str,
        normalizer: Normalizer,
        *,
        batch_size: int,
        seed: int,
        cache_dir: str | Path,
        progress: bool = True,
    ) -> None:
        self.config = config.replace(base_policy=CO_TRAINED_BASE)
        self.heads = PlannerHeads(self.config)
        self.normalizer = normalizer
        self.batch_size = batch_size
        self.record_config = PlannerTrainConfig(robot=(robot,), cache_dir=str(cache_dir))
        self.data, self.holdouts, self.sampler = training_data(
            self.heads, normalizer, self.record_config, cache_dir=cache_dir, seed=seed, progress=progress
        )

    def batch(self) -> dict[str, Any]:
        return self.sampler.batch(self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position (for an exact resume)."""
        return {"rng": self.sampler.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.rng.bit_generator.state = state["rng"]

    def save(self, directory: Path, step: int) -> None:
        """Write the planner checkpoint (``config.json`` last) and its training record into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        save_safetensors(directory / WEIGHTS_FILE, self.heads.checkpoint_state_dict())
        self.normalizer.save(directory / NORMALIZATION_FILE)
        frozen = {"base_policy": CO_TRAINED_BASE, **self.heads.frozen_references()}
        record = training_record(self.record_config, self.data, self.holdouts)
        atomic_write_json(directory / TRAINING_FILE, record | {"frozen": frozen, "steps": step, "co_trained": True})
        self.config.save_json(directory / CONFIG_FILE)

    def load(self, directory: Path) -> None:
        """Load the weights of a planner :meth:`save` wrote (resuming a run)."""
        path = directory / WEIGHTS_FILE
        try:
            self.heads.load_checkpoint_state_dict(load_safetensors(path))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: the co-trained planner's weights do not load ({err})") from err
