"""Training of LAPA's latent action model (``vlajepa train-lam``) on frame pairs ``(o_t, o_{t+H})`` of robot data
and/or action-free video.

Pairs come from the same window datasets as policy training (:mod:`vlajepa.data.windows`) with a clip of two
frames, ``t`` and ``t + horizon``, of the model's camera; pairs whose later frame lies past the episode end are
left out of the loss. After the first step (a data-dependent start: the random codebook lies far from the first
latents) and every ``replace_every`` steps during the first ``replace_until`` share of training, codebook entries
that fell out of use are moved onto the latest encoder outputs (:meth:`vlajepa.nn.nsvq.NSVQ
.replace_dead_codes`). ``metrics.jsonl`` logs, per window of ``log_every`` steps: the reconstruction error
``loss``, the copy-``o_t`` baseline's ``copy_loss`` (the reconstruction must fall below it for the codes to carry
the change), their ratio, the codebook's perplexity over the window's codes and the number of dead codes.
Writes ``lam.safetensors`` + ``lam_config.json`` (load with :meth:`LatentActionModel.load`) and
``lam_train_config.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vlajepa.config import ConfigError, PolicyConfig
from vlajepa.constants import FUTURE_IS_PAD, future_image_key
from vlajepa.data.video_io import DecodeCache
from vlajepa.data.windows import MixtureLoader, RobotWindows, VideoWindows
from vlajepa.policies.lapa import LAMConfig, LAMTrainConfig, LatentActionModel
from vlajepa.policies.lapa.configuration import LAM_TRAIN_CONFIG_FILE
from vlajepa.train.metrics import MetricsLogger


@dataclass
class LAMTrainResult:
    """What :func:`train_lam` did."""

    directory: Path  # the model folder (lam.safetensors, lam_config.json)
    final: dict[str, Any] = field(default_factory=dict)  # the last metrics line
    wall_time_s: float = 0.0


def pair_windows(lam: LAMConfig, interface: PolicyConfig, robot: str | Path | None,
                 video: str | Path | None) -> dict[str, Any]:  # fmt: skip
    """Window datasets whose clips are the pairs ``(o_t, o_{t+horizon})`` of ``lam.camera`` (``interface`` gives
    the robot data's state and action widths)."""
    data = PolicyConfig(  # the observation interface alone: what the window datasets read
        cameras=(lam.camera,),
        image_size=lam.image_size,
        clip_length=2,
        frame_stride=lam.horizon,
        state_dim=interface.state_dim,
        action_dim=interface.action_dim,
        chunk_size=interface.chunk_size,
        n_action_steps=interface.n_action_steps,
    )
    windows: dict[str, Any] = {}
    if robot:
        windows["robot"] = RobotWindows(robot, data, with_actions=False, decode_cache=DecodeCache(max_bytes=2 << 30))
    if video:
        windows["video"] = VideoWindows(video, data, decode_cache=DecodeCache(max_bytes=2 << 30))
    if not windows:
        raise ConfigError("no training data: give a robot dataset and/or a video set")
    return windows


def _lr_factor(step: int, config: LAMTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def codebook_figures(codes: np.ndarray, num_codes: int, threshold: float) -> dict[str, float]:
    """Perplexity of the code distribution of ``codes`` (any shape) and how many codes have a share below
    ``threshold`` (dead)."""
    share = np.bincount(codes.reshape(-1), minlength=num_codes) / max(1, codes.size)
    perplexity = float(np.exp(-(share * np.log(np.clip(share, 1e-12, None))).sum()))
    return {"perplexity": perplexity, "dead_codes": int((share < threshold).sum())}


def train_lam(
    lam_config: LAMConfig,
    train_config: LAMTrainConfig,
    out: str | Path,
    *,
    interface: PolicyConfig,
    robot: str | Path | None = None,
    video: str | Path | None = None,
    progress: bool = True,
) -> LAMTrainResult:
    """Train a :class:`LatentActionModel` on frame pairs of ``robot`` and/or ``video``; see the module docstring."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = train_config
    torch.manual_seed(cfg.seed)
    windows = pair_windows(lam_config, interface, robot, video)
    model = LatentActionModel(lam_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, cfg))
    loader = MixtureLoader(windows, {"robot": cfg.robot_weight, "video": cfg.video_weight},
                           dict.fromkeys(windows, cfg.batch_size), cfg.seed, num_workers=cfg.num_workers)  # fmt: skip
    cfg.save_json(out / LAM_TRAIN_CONFIG_FILE)
    logger = MetricsLogger(out, tensorboard=False)
    key = future_image_key(lam_config.camera)
    replace_until = round(cfg.replace_until * cfg.steps)
    window: dict[str, list[float]] = {"loss": [], "copy_loss": []}
    window_codes: list[np.ndarray] = []
    replaced = 0
    final: dict[str, Any] = {}
    bar = tqdm(total=cfg.steps, desc="train-lam", unit="step", disable=not progress)
    try:
        for step in range(1, cfg.steps + 1):
            _, batch = next(loader)
            clip = batch[key]  # (b, 2, 3, S, S)
            valid = ~batch[FUTURE_IS_PAD][:, 1]
            result = model(clip[:, 0], clip[:, 1], valid)
            if not torch.isfinite(result.loss):
                raise FloatingPointError(f"step {step}: non-finite reconstruction loss {result.loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
            optimizer.step()
            scheduler.step()
            if step <= replace_until and (step == 1 or step % cfg.replace_every == 0):
                replaced += model.quantizer.replace_dead_codes(cfg.dead_threshold)
            window["loss"].append(result.loss.item())
            window["copy_loss"].append(result.copy_loss.item())
            window_codes.append(result.codes[valid].numpy())
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss, copy = float(np.mean(window["loss"])), float(np.mean(window["copy_loss"]))
                final = {
                    "loss": loss,
                    "copy_loss": copy,
                    "loss_over_copy": loss / max(copy, 1e-12),
                    **codebook_figures(np.concatenate(window_codes), lam_config.codebook_size, cfg.dead_threshold),
                    "codes_replaced": replaced,
                    "lr": scheduler.get_last_lr()[0],
                    "elapsed_s": round(time.perf_counter() - start, 2),
                }
                logger.log(step, final)
                bar.set_postfix(loss=f"{loss:.4f}", copy=f"{copy:.4f}", ppl=f"{final['perplexity']:.2f}")
                window = {"loss": [], "copy_loss": []}
                window_codes, replaced = [], 0
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                model.save(out)
    finally:
        bar.close()
        logger.close()
        loader.close()
    return LAMTrainResult(out, {"step": cfg.steps, **final}, time.perf_counter() - start)
