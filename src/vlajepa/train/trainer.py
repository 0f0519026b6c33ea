"""One trainer over any registered policy and every recipe: behaviour cloning, robot + video co-training,
world-model pretraining on video (optionally with robot data), and fine-tuning from a pretrained checkpoint.

A recipe is data + config: ``TrainConfig.robot`` / ``video`` and their ratio, ``robot_actions`` (False: robot
windows train the world model only), ``init_from`` (fine-tuning), and the policy config (its ``type`` picks the
policy class through the registry; for VLA-JEPA ``use_world_model=False`` is BC). Each optimizer step averages the
loss of ``batches_per_step`` homogeneous batches from the mixture, then: gradient clipping, one AdamW step over the
policy's ``get_optim_params()`` groups, ONE scheduler step (however robot and video batches alternate), and the
policy's ``on_optimizer_step()`` hook (an EMA target's update).

With a planner config (``vlajepa train --planner``) the planner's world model and score train in the same steps
on their own batches of the robot data (:class:`~vlajepa.train.planner.PlannerCoTraining`), without changing the
policy's training: separate parameters, gradient clipping and random stream.

Multi-process training goes through Hugging Face ``accelerate`` (DDP; gloo on CPU): launch the same command with
``accelerate launch --num_processes N [--cpu] -m vlajepa.cli train ...``. Each process takes its own slice of
every global batch; every process draws the same source for a given step, so the same sub-networks receive
gradients everywhere.

Checkpoints (:mod:`vlajepa.train.checkpoints`) resume exactly: model, optimizer, scheduler, every process's RNG
states and the data-stream position are restored, and a resumed run reproduces the uninterrupted loss sequence.
A non-finite loss or gradient stops training before the optimizer step with :class:`NonFiniteLossError` naming
the step; the last checkpoint is left as it was.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vlajepa.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_normalizer,
    load_safetensors,
    save_safetensors,
)
from vlajepa.config import ConfigError, PolicyConfig
from vlajepa.constants import FUTURE_FRAME_IDS, TASK
from vlajepa.data.latent_cache import LatentCache, build_latent_cache
from vlajepa.data.video_io import DecodeCache
from vlajepa.data.windows import MixtureLoader, RobotWindows, VideoWindows
from vlajepa.io_utils import atomic_write_json
from vlajepa.normalize import Normalizer
from vlajepa.policies import PreTrainedPolicy, load_policy_config, make_policy
from vlajepa.policies.planning import PlannerConfig
from vlajepa.policies.planning.modeling import check_interface
from vlajepa.train import checkpoints as ckpt
from vlajepa.train.augment import augment_batch, drop_instructions
from vlajepa.train.config import RUNTIME_FIELDS, TrainConfig
from vlajepa.train.metrics import MetricsLogger
from vlajepa.train.optim import build_optimizer, build_scheduler
from vlajepa.train.planner import PLANNER_DIR, PlannerCoTraining
from vlajepa.train.seeding import seed_everything
from vlajepa.train.weight_ema import RAW_WEIGHTS_FILE, WeightEMA

ROBOT, VIDEO = "robot", "video"
LATENT_CACHE_DIR = "latent_cache"
PLANNER_GROUP_PREFIX = "planner_"  # optimizer groups of a co-trained planner


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the message names the step and the last checkpoint."""


@dataclass
class TrainResult:
    """What a call to :meth:`Trainer.train` did."""

    step: int  # optimizer steps done in all (including those before a resume)
    checkpoint: Path  # the final checkpoint
    losses: list[float] = field(default_factory=list)  # loss of each step run by this call (mean over processes)
    wall_time_s: float = 0.0  # seconds spent in this call's training loop
    samples_per_s: float = 0.0  # windows per second over all processes in this call


class StepModule(nn.Module):
    """The unit DDP wraps: one forward over every batch of an optimizer step, returning their mean loss (and, with
    a co-trained planner, its loss on its own batch, which is added to it for the backward pass).

    One forward per step (instead of one per batch) lets robot and video batches share a single gradient
    synchronisation, and DDP's unused-parameter search covers the action head on video-only steps.
    """

    def __init__(self, policy: PreTrainedPolicy, planner: nn.Module | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.planner = planner

    def forward(
        self, batches: list[dict[str, Any]], planner_batch: dict[str, Any] | None = None
    ) -> tuple[Tensor, list[dict[str, float]], Tensor | None, dict[str, float]]:
        results = [self.policy(batch) for batch in batches]
        loss = torch.stack([loss for loss, _ in results]).mean()
        planner_loss, planner_logs = None, {}
        if self.planner is not None and planner_batch is not None:
            planner_loss, planner_logs = self.planner(planner_batch)
        return loss, [logs for _, logs in results], planner_loss, planner_logs


def make_accelerator(precision: str):
    """An ``accelerate.Accelerator`` for CPU/GPU, single- or multi-process, with DDP's unused-parameter search."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, PartialState

    kwargs = {
        # On a machine without CUDA, processes started by torchrun / `accelerate launch --multi_gpu` form a
        # multi-CPU (gloo) group only when accelerate is told to use the CPU.
        "cpu": not torch.cuda.is_available(),
        "mixed_precision": "bf16" if precision == "bf16" else "no",
        # Video batches leave the action head unused; DDP must not wait for its gradients.
        "kwargs_handlers": [DistributedDataParallelKwargs(find_unused_parameters=True)],
    }
    try:
        return Accelerator(**kwargs)
    except ValueError:
        # A previous Trainer in this (single) process fixed another precision; it may be changed here.
        if PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


class Trainer:
    """Train a policy on robot and/or video windows; see the module docstring.

    Args:
        policy_config: the policy to train (saved as ``config.json`` in every checkpoint).
        train_config: data, recipe and optimization (saved as ``train_config.json``).
        out: run folder: ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``, ``latent_cache/``.
        planner: also train this planner's world model and score in the same steps, on the robot data
            (:class:`~vlajepa.train.planner.PlannerCoTraining`); each checkpoint then holds the planner in
            ``planner/`` (its ``config.json``), whose base policy is that checkpoint. A resumed run takes it from
            its last checkpoint.
        resume: continue from ``<out>/checkpoints/last``; the configs must be the checkpoint's, except for
            :data:`~vlajepa.train.config.RUNTIME_FIELDS`.
        progress: show a progress bar (main process only).
    """

    def __init__(
        self,
        policy_config: PolicyConfig,
        train_config: TrainConfig,
        out: str | Path,
        *,
        planner: PlannerConfig | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.config = policy_config
        self.train_config = train_config
        self.out = Path(out)
        self.progress = progress
        self.accelerator = make_accelerator(train_config.precision)
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.step = 0
        self.samples_seen = 0
        self.init_report: dict[str, Any] | None = None  # what init_from loaded
        self._check_recipe()

        if not resume and ckpt.last_checkpoint(self.out) is not None:
            raise ConfigError(f"{self.out} already holds a run (checkpoints/last); resume it or choose another folder")
        resume_from = self._resume_checkpoint() if resume else None
        seed_everything(train_config.seed)  # same initialization on every process
        self.policy = make_policy(policy_config)
        self.use_cache = self.policy.frozen_target() is not None and train_config.latent_cache != "off"
        self.windows = self._build_windows(resume_from)
        self.normalizer = self._normalizer(resume_from)
        self.policy.set_normalizer(self.normalizer)
        if train_config.init_from and resume_from is None:
            self._init_from(Path(train_config.init_from))
        if train_config.init_vision and resume_from is None:
            self._init_vision(Path(train_config.init_vision))
        self.policy.to(self.accelerator.device)
        if self.use_cache and train_config.augment_shift and policy_config.reads_cached_features:
            raise ConfigError(
                "train.augment_shift shifts pixels, but the student reads its frozen encoder's cached features; "
                "set train.latent_cache=off to augment (the encoder then runs on every batch) or augment_shift=0"
            )
        self.caches = self._build_caches() if self.use_cache else {}
        self.planner = self._build_planner(planner, resume_from)

        extra = {PLANNER_GROUP_PREFIX: self.planner.heads} if self.planner is not None else None
        self.optimizer = build_optimizer(self.policy, train_config, extra=extra)
        self.scheduler = build_scheduler(self.optimizer, train_config)  # stepped by hand: once per optimizer step
        heads = self.planner.heads.to(self.accelerator.device) if self.planner is not None else None
        self.step_module, self.optimizer = self.accelerator.prepare(StepModule(self.policy, heads), self.optimizer)
        # the policy's and a co-trained planner's parameters are clipped separately: the policy trains as it would
        # without the planner
        groups = self.optimizer.param_groups
        self.trainable = [p for g in groups if not g["name"].startswith(PLANNER_GROUP_PREFIX) for p in g["params"]]
        self.planner_params = [p for g in groups if g["name"].startswith(PLANNER_GROUP_PREFIX) for p in g["params"]]
        self.weight_ema = WeightEMA(self.policy, train_config.ema_weights) if train_config.ema_weights else None
        self.loader = MixtureLoader(
            self.windows,
            {ROBOT: train_config.robot_weight, VIDEO: train_config.video_weight},
            {ROBOT: train_config.batch_size, VIDEO: train_config.video_batch},
            train_config.seed,
            num_workers=train_config.num_workers,
            rank=self.rank,
            world_size=self.world_size,
        )
        # Training noise (flow matching, SIGReg slices) differs per process and does not depend on setup work.
        seed_everything(train_config.seed * 1000 + 1 + self.rank)
        if resume_from is not None:
            self._restore(resume_from)

    # ------------------------------------------------------------------ setup

    def _check_recipe(self) -> None:
        cfg, model = self.train_config, self.config
        if not cfg.robot and not cfg.video:
            raise ConfigError("no training data: give a robot dataset (train.robot) and/or a video set (train.video)")
        if not model.uses_future_frames:
            if cfg.video:
                raise ConfigError(
                    f"action-free video needs a policy that learns from future frames, but this {model.type} config "
                    "trains on actions only (e.g. BC: use_world_model is false; LAPA: stage action)"
                )
            if not cfg.robot_actions:
                raise ConfigError(
                    f"robot_actions=false trains on future frames only, but this {model.type} config learns from "
                    "actions only (e.g. BC: use_world_model is false; LAPA: stage action)"
                )
        if cfg.robot and cfg.robot_weight == 0 and (not cfg.video or cfg.video_weight == 0):
            raise ConfigError("robot_weight and video_weight are both 0 for the data given")

    def _resume_checkpoint(self) -> Path:
        found = ckpt.last_checkpoint(self.out)
        if found is None:
            raise CheckpointError(f"{ckpt.checkpoints_root(self.out) / ckpt.LAST}: no checkpoint to resume from")
        saved = load_policy_config(found)
        if saved != self.config:
            raise ConfigError(f"{found}: the model config differs from the checkpoint's; resume with its config.json")
        saved_train = TrainConfig.load_json(found / ckpt.TRAIN_CONFIG_FILE)
        runtime = {name: getattr(self.train_config, name) for name in RUNTIME_FIELDS}
        if saved_train.replace(**runtime) != self.train_config:
            changed = [
                name
                for name, value in self.train_config.to_dict().items()
                if saved_train.to_dict()[name] != value and name not in RUNTIME_FIELDS
            ]
            raise ConfigError(
                f"{found}: the training config differs from the checkpoint's in {changed}; a resumed run may only "
                f"change {', '.join(RUNTIME_FIELDS)}"
            )
        return found

    def _build_windows(self, resume_from: Path | None) -> dict[str, Any]:
        cfg, model = self.train_config, self.config
        future_images = model.uses_future_frames and not self.use_cache
        cache_bytes = int(cfg.decode_cache_gb * (1 << 30))
        windows: dict[str, Any] = {}
        if cfg.robot:
            windows[ROBOT] = RobotWindows(
                cfg.robot,
                model,
                normalizer=load_normalizer(resume_from) if resume_from is not None else None,
                state_mode=cfg.state_norm,
                action_mode=cfg.action_norm,
                future_images=future_images,
                with_actions=cfg.robot_actions,
                decode_cache=DecodeCache(max_bytes=cache_bytes),
            )
        if cfg.video:
            windows[VIDEO] = VideoWindows(
                cfg.video, model, future_images=future_images, decode_cache=DecodeCache(max_bytes=cache_bytes)
            )
        return windows

    def _normalizer(self, resume_from: Path | None) -> Normalizer:
        """The robot data's normalization; else the resumed or initial checkpoint's; else none (video only)."""
        if ROBOT in self.windows:
            return self.windows[ROBOT].normalizer
        for source in (resume_from, self.train_config.init_from):
            if source is not None:
                return load_normalizer(source)
        return Normalizer({})

    def _init_from(self, path: Path) -> None:
        """Load the weights of a pretrained checkpoint that fit this policy (e.g. all but a BC model's world model).

        Weights present in both with different shapes are an error; so is a checkpoint sharing no weight.
        """
        try:
            self.init_report = self.policy.load_matching_weights(load_safetensors(path / WEIGHTS_FILE))
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from err

    def _init_vision(self, path: Path) -> None:
        """Start the policy's vision encoder from encoder weights saved by ``vlajepa pretrain-encoder``."""
        init_vision = getattr(self.policy, "init_vision", None)
        if init_vision is None:
            raise ConfigError(f"init_vision: a {self.config.type} policy has no vision encoder to initialize")
        init_vision(path)

    def _build_caches(self) -> dict[str, LatentCache]:
        cfg = self.train_config
        directory = None
        if cfg.latent_cache == "disk":
            directory = Path(cfg.latent_cache_dir) if cfg.latent_cache_dir else self.out / LATENT_CACHE_DIR
        caches = {}
        target = self.policy.frozen_target()
        assert target is not None
        for name, windows in self.windows.items():
            if directory is None:
                caches[name] = build_latent_cache(
                    target, windows, name=name, dtype=cfg.latent_cache_dtype, progress=self._show_bar
                )
                continue
            with self.accelerator.main_process_first():  # the main process builds, the others then reuse it
                caches[name] = build_latent_cache(
                    target,
                    windows,
                    name=name,
                    directory=directory,
                    dtype=cfg.latent_cache_dtype,
                    progress=self._show_bar,
                )
        return caches

    def _build_planner(self, config: PlannerConfig | None, resume_from: Path | None) -> PlannerCoTraining | None:
        """The co-trained planner (see the class docstring), or None; a resumed run takes its last checkpoint's."""
        if resume_from is not None:
            saved = resume_from / PLANNER_DIR
            if not (saved / CONFIG_FILE).is_file():
                return None
            config = load_policy_config(saved)
            if not isinstance(config, PlannerConfig):
                raise CheckpointError(f"{saved}: a {config.type} config where the co-trained planner belongs")
        if config is None:
            return None
        cfg = self.train_config
        if ROBOT not in self.windows or not cfg.robot_actions:
            raise ConfigError("planner: the co-trained planner learns from robot data with actions (train.robot)")
        check_interface(config, self.config, "the policy")
        directory = Path(cfg.latent_cache_dir) if cfg.latent_cache_dir else self.out / LATENT_CACHE_DIR
        with self.accelerator.main_process_first():  # the main process builds the latent cache, the others reuse it
            planner = PlannerCoTraining(
                config,
                str(cfg.robot),
                self.normalizer,
                batch_size=cfg.batch_size,
                seed=cfg.seed * 1000 + 7 + self.rank,
                cache_dir=directory,
                progress=self._show_bar,
            )
        if resume_from is not None:
            planner.load(resume_from / PLANNER_DIR)
        return planner

    @property
    def _show_bar(self) -> bool:
        return self.progress and self.is_main

    # ------------------------------------------------------------------ resume

    def _restore(self, path: Path) -> None:
        state = ckpt.read_json(path / ckpt.TRAINING_STATE_FILE)
        if state.get("world_size") != self.world_size:
            raise CheckpointError(
                f"{path}: written by {state.get('world_size')} process(es), resumed with {self.world_size}; "
                "an exact resume needs the same number of processes"
            )
        try:
            self.policy.load_checkpoint_state_dict(load_safetensors(path / WEIGHTS_FILE))
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from err
        if self.weight_ema is not None:  # model.safetensors held the averages; the iterate is beside them
            raw = path / RAW_WEIGHTS_FILE
            try:
                self.weight_ema.restore(load_safetensors(raw))
            except ValueError as err:
                raise CheckpointError(f"{raw}: {err}") from err
        self.optimizer.load_state_dict(ckpt.load_torch(path / ckpt.OPTIMIZER_FILE))
        self.scheduler.load_state_dict(ckpt.load_torch(path / ckpt.SCHEDULER_FILE))
        self.loader.load_state_dict(state["data"])
        if self.planner is not None:
            self.planner.load_state_dict(state["planner"][str(self.rank)])
        ckpt.set_rng_state(ckpt.load_torch(path / ckpt.rng_file(self.rank)))
        self.step = int(state["step"])
        self.samples_seen = int(state["samples_seen"])

    # ------------------------------------------------------------------ training

    def _prepare(self, source: str, batch: dict[str, Any]) -> dict[str, Any]:
        """Move a batch to the device and swap future frame ids for cached latents (or drop them)."""
        if source in self.caches:
            batch = self.caches[source].attach(batch, self.config.cameras)
        else:
            batch = {k: v for k, v in batch.items() if k != FUTURE_FRAME_IDS}
        device = self.accelerator.device
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
        batch = augment_batch(batch, self.config.cameras, self.train_config.augment_shift)
        return drop_instructions(batch, self.train_config.instruction_dropout) if source == ROBOT else batch

    def _global_mean(self, value: Tensor) -> float:
        """Mean over processes (NaN anywhere makes it NaN everywhere, so every process stops together)."""
        return float(self.accelerator.reduce(value.detach().float().reshape(1), reduction="mean").item())

    def _non_finite(self, what: str, value: float, logs: list[dict[str, float]]) -> NonFiniteLossError:
        last = ckpt.last_checkpoint(self.out)
        where = f"the last good checkpoint is {last} (left untouched)" if last else "no checkpoint was written yet"
        return NonFiniteLossError(
            f"step {self.step + 1}: {what} is {value} (not finite); training stopped before the optimizer step; "
            f"{where}. Loss parts on process {self.rank}: {logs}"
        )

    def train_step(self) -> dict[str, Any]:
        """One optimizer step; returns the step's metrics (loss averaged over processes)."""
        cfg = self.train_config
        named = [next(self.loader) for _ in range(cfg.batches_per_step)]
        batches = [self._prepare(source, batch) for source, batch in named]
        planner_batch = self._planner_batch()
        self.step_module.train()
        loss, logs, planner_loss, planner_logs = self.step_module(batches, planner_batch)
        mean_loss = self._global_mean(loss)
        if not math.isfinite(mean_loss):
            raise self._non_finite("the loss", mean_loss, logs)
        if planner_loss is not None:
            mean_planner_loss = self._global_mean(planner_loss)
            if not math.isfinite(mean_planner_loss):
                raise self._non_finite("the co-trained planner's loss", mean_planner_loss, [planner_logs])
            loss = loss + planner_loss
        self.accelerator.backward(loss)
        norm = self.accelerator.clip_grad_norm_(self.trainable, cfg.grad_clip or math.inf)
        # DeepSpeed clips inside its engine (its config's gradient_clipping) and returns no norm here
        grad_norm = float("nan") if norm is None else float(norm)
        if norm is not None and not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise self._non_finite("the gradient norm", grad_norm, logs)
        if self.planner_params:
            self.accelerator.clip_grad_norm_(self.planner_params, cfg.grad_clip or math.inf)
        learning_rates = {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups if "/" not in g["name"]}
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.policy.on_optimizer_step()
        self.step += 1
        if self.weight_ema is not None:
            self.weight_ema.update(self.step)
        samples = sum(len(batch[TASK]) for batch in batches) * self.world_size
        self.samples_seen += samples
        metrics: dict[str, Any] = {"loss": mean_loss, "grad_norm": grad_norm, "samples": samples, **learning_rates}
        for (source, _), parts in zip(named, logs, strict=True):
            metrics[f"batches/{source}"] = metrics.get(f"batches/{source}", 0) + 1
            for key, value in parts.items():
                metrics.setdefault(f"{source}/{key}", []).append(value)
        metrics |= {f"planner/{key}": value for key, value in planner_logs.items()}
        return {k: float(np.mean(v)) if isinstance(v, list) else v for k, v in metrics.items()}

    def _planner_batch(self) -> dict[str, Any] | None:
        if self.planner is None:
            return None
        device = self.accelerator.device
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.planner.batch().items()}

    def train(self, until: int | None = None) -> TrainResult:
        """Run to ``train_config.steps`` (or stop early after step ``until``, as a kill would, with a checkpoint);
        checkpoint every ``checkpoint_every`` steps and at the end.
        """
        cfg = self.train_config
        stop = cfg.steps if until is None else min(until, cfg.steps)
        logger = MetricsLogger(self.out, resume_step=self.step, tensorboard=cfg.tensorboard) if self.is_main else None
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not self._show_bar)
        losses: list[float] = []
        window: dict[str, list[float]] = defaultdict(list)
        samples_start, started = self.samples_seen, time.perf_counter()
        window_start = started
        try:
            while self.step < stop:
                metrics = self.train_step()
                losses.append(metrics["loss"])
                for key, value in metrics.items():
                    window[key].append(value)
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                if self.step % cfg.log_every == 0 or self.step == stop:
                    now = time.perf_counter()
                    record = {k: float(np.sum(v)) if k.startswith(("batches/", "samples")) else float(np.mean(v))
                              for k, v in window.items()}
                    record["samples_per_s"] = record["samples"] / max(now - window_start, 1e-9)
                    if logger is not None:
                        logger.log(self.step, record)
                    window.clear()
                    window_start = now
                if self.step % cfg.checkpoint_every == 0 or self.step == stop:
                    self.save_checkpoint()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
            self.loader.close()
        elapsed = time.perf_counter() - started
        return TrainResult(
            step=self.step,
            checkpoint=self.out / ckpt.CHECKPOINTS_DIR / ckpt.step_name(self.step),
            losses=losses,
            wall_time_s=elapsed,
            samples_per_s=(self.samples_seen - samples_start) / max(elapsed, 1e-9),
        )

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step atomically (every process writes its RNG state)."""
        accelerator = self.accelerator
        tmp = ckpt.temporary_dir(self.out, self.step)
        accelerator.wait_for_everyone()
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        ckpt.save_torch(tmp / ckpt.rng_file(self.rank), ckpt.get_rng_state())
        accelerator.wait_for_everyone()
        final = ckpt.checkpoints_root(self.out) / ckpt.step_name(self.step)
        planner_states = self._planner_states() if self.planner is not None else None  # a collective: every process
        if self.is_main:
            if self.weight_ema is None:
                self.policy.save_pretrained(tmp)
            else:
                save_safetensors(tmp / RAW_WEIGHTS_FILE, self.weight_ema.raw_state())
                with self.weight_ema.swapped():
                    self.policy.save_pretrained(tmp)
            if self.planner is not None:
                self.planner.save(tmp / PLANNER_DIR, self.step)
            ckpt.save_torch(tmp / ckpt.OPTIMIZER_FILE, self.optimizer.state_dict())
            ckpt.save_torch(tmp / ckpt.SCHEDULER_FILE, self.scheduler.state_dict())
            self.train_config.save_json(tmp / ckpt.TRAIN_CONFIG_FILE)
            atomic_write_json(tmp / ckpt.TRAINING_STATE_FILE, self._training_state(planner_states))
            ckpt.publish(self.out, self.step, self.train_config.keep_checkpoints)
        accelerator.wait_for_everyone()
        return final

    def _training_state(self, planner_states: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            "world_size": self.world_size,
            "data": self.loader.state_dict(),
            **({"planner": planner_states} if planner_states is not None else {}),
            "latent_caches": {name: cache.key for name, cache in self.caches.items()},
            "frozen": self.policy.frozen_references(),
        }

    def _planner_states(self) -> dict[str, Any]:
        """Every process's planner sampler position, keyed by rank (gathered from every process: call it on all)."""
        assert self.planner is not None
        if self.world_size == 1:
            return {"0": self.planner.state_dict()}
        from accelerate.utils import gather_object

        return {str(rank): state for rank, state in enumerate(gather_object([self.planner.state_dict()]))}

    @classmethod
    def resume(cls, out: str | Path, *, progress: bool = True, **changes: Any) -> Trainer:
        """A trainer continuing ``<out>/checkpoints/last`` with its saved configs; ``changes`` may set the
        :data:`~vlajepa.train.config.RUNTIME_FIELDS` (e.g. ``steps=...`` to extend the run).
        """
        found = ckpt.last_checkpoint(out)
        if found is None:
            raise CheckpointError(f"{ckpt.checkpoints_root(out) / ckpt.LAST}: no checkpoint to resume from")
        not_runtime = sorted(set(changes) - set(RUNTIME_FIELDS))
        if not_runtime:
            raise ConfigError(f"cannot change {not_runtime} when resuming; only {', '.join(RUNTIME_FIELDS)}")
        policy_config = load_policy_config(found)
        train_config = TrainConfig.load_json(found / ckpt.TRAIN_CONFIG_FILE)
        train_config = train_config.replace(**{k: v for k, v in changes.items() if v is not None})
        return cls(policy_config, train_config, out, resume=True, progress=progress)
