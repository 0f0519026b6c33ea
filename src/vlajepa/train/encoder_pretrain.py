"""Self-supervised frozen target: V-JEPA-style masked latent prediction on the action-free video set.

A *context* encoder (the project's :class:`~vlajepa.nn.vision.VisionEncoder`) sees a random subset of a
frame's patch tokens; a small *predictor* receives the context tokens plus learned mask tokens at the hidden
positions and predicts what an EMA copy of the encoder (the *target*) outputs for those hidden patches, from the
full frame (L1 loss, no gradient into the target). Masks are unions of random rectangles, so the predictor has to
infer whole regions rather than interpolate single patches. The EMA target after training is the encoder a
``target: {kind: frozen, checkpoint: ...}`` world model loads (:func:`vlajepa.nn.target.save_encoder`).

Frames are encoded one at a time, matching how the target encoder is used in training (each frame on its own).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from vlajepa.io_utils import atomic_write_json
from vlajepa.nn.config import VisionConfig
from vlajepa.nn.target import save_encoder
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding
from vlajepa.nn.vision import VisionEncoder

ENCODER_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder_config.json"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class EncoderPretrainConfig:
    """Masked latent prediction: the encoder's architecture, the masking and the optimisation."""

    image_size: int = 96  # frames are resized to this (must match the world model's image_size)
    vision: VisionConfig = field(default_factory=VisionConfig)  # the encoder (= the frozen target's architecture)
    predictor_dim: int = 96  # width of the masked-token predictor (narrower than the encoder: a bottleneck)
    predictor_depth: int = 2  # predictor transformer blocks
    predictor_heads: int = 4  # predictor attention heads
    mask_ratio: float = 0.6  # fraction of patches hidden from the context encoder (and predicted)
    mask_blocks: int = 4  # rectangles whose union seeds the mask (the rest are filled with random patches)
    mask_block_scale: float = 0.15  # area of one rectangle as a fraction of the frame
    ema_momentum: float = 0.996  # target <- m * target + (1 - m) * context encoder after each step
    steps: int = 1000  # optimizer steps
    batch_size: int = 64  # frames per step
    lr: float = 1e-3  # peak AdamW learning rate (linear warmup, cosine decay to 10%)
    warmup_steps: int = 50  # linear warmup steps
    weight_decay: float = 0.04  # AdamW weight decay
    frame_stride: int = 2  # keep every s-th frame of each clip in memory (neighbouring frames are near copies)
    seed: int = 0  # parameter init, frame sampling and masks
    checkpoint_every: int = 500  # steps between (atomic) saves of the target encoder; the end always saves
    log_every: int = 25  # steps between lines of metrics.jsonl

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def block_masks(
    batch: int, grid: int, num_masked: int, blocks: int, block_scale: float, generator: torch.Generator
) -> Tensor:
    """Indices ``(b, num_masked)`` of hidden patches on a ``grid x grid`` frame, mostly in rectangles.

    Every sample hides exactly ``num_masked`` patches (so a batch stacks): patches inside the union of ``blocks``
    random rectangles rank first, ties and the remainder broken at random.
    """
    side = max(1, round(math.sqrt(block_scale) * grid))
    scores = torch.rand(batch, grid, grid, generator=generator)  # (b, g, g) in [0, 1)
    corners = torch.randint(0, grid - side + 1, (batch, blocks, 2), generator=generator)
    for i in range(batch):
        for top, left in corners[i].tolist():
            scores[i, top : top + side, left : left + side] += 1.0
    return scores.flatten(1).topk(num_masked, dim=1).indices  # (b, num_masked)


def complement(indices: Tensor, total: int) -> Tensor:
    """The ``(b, total - k)`` indices not in ``indices`` ``(b, k)``, ascending."""
    hidden = torch.zeros(indices.shape[0], total, dtype=torch.bool).scatter_(1, indices, True)
    return (~hidden).nonzero()[:, 1].view(indices.shape[0], -1)


class MaskedLatentModel(nn.Module):
    """Context encoder, EMA target encoder and masked-token predictor; ``forward(frames) -> loss``."""

    def __init__(self, config: EncoderPretrainConfig) -> None:
        super().__init__()
        if config.vision.stem == "cnn":
            raise ValueError(
                "vision.stem 'cnn' cannot be pretrained with masked patches: its overlapping convolutions would show "
                "the context encoder pixels of the hidden patches; use 'conv' or 'patch'"
            )
        self.config = config
        self.encoder = VisionEncoder(config.vision, config.image_size)
        self.target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.grid = config.image_size // config.vision.patch_size
        num_patches = self.encoder.num_patches
        self.num_masked = min(num_patches - 1, max(1, round(config.mask_ratio * num_patches)))
        dim = config.predictor_dim
        self.predictor_in = nn.Linear(config.vision.dim, dim)
        self.mask_token = learned_embedding(dim)
        self.predictor_pos = learned_embedding(num_patches, dim)
        self.predictor = Transformer(dim, config.predictor_depth, config.predictor_heads, 4.0)
        self.predictor_out = nn.Linear(dim, config.vision.dim)
        for module in (self.predictor_in, self.predictor, self.predictor_out):
            module.apply(init_weights)

    def forward(self, frames: Tensor, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """L1 between predicted and target latents of the hidden patches; ``frames`` ``(b, 3, H, W)`` in [0, 1].

        The logs hold ``target_std``, the target latents' standard deviation over frames and patches averaged
        over channels: a value falling towards 0 means the encoder collapses to a constant.
        """
        cfg = self.config
        b, n = frames.shape[0], self.encoder.num_patches
        hidden = block_masks(b, self.grid, self.num_masked, cfg.mask_blocks, cfg.mask_block_scale, generator)
        visible = complement(hidden, n)  # (b, n - k)
        with torch.no_grad():
            target = self.target(frames)  # (b, n, d): every patch, from the full frame
            target = torch.gather(target, 1, repeat(hidden, "b k -> b k d", d=target.shape[-1]))  # (b, k, d)
        context = self.predictor_in(self.encoder(frames, keep=visible))  # (b, n - k, d_p)
        pos = self.predictor_pos.expand(b, -1, -1)  # (b, n, d_p)
        d_p = pos.shape[-1]
        context = context + torch.gather(pos, 1, repeat(visible, "b m -> b m d", d=d_p))
        queries = self.mask_token + torch.gather(pos, 1, repeat(hidden, "b k -> b k d", d=d_p))  # (b, k, d_p)
        x = self.predictor(torch.cat([context, queries], dim=1))  # (b, n, d_p)
        predicted = self.predictor_out(x[:, -self.num_masked :])  # (b, k, d)
        target_std = target.flatten(0, 1).std(dim=0).mean().item()
        return F.l1_loss(predicted, target), {"target_std": target_std}

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        for target_param, online_param in zip(self.target.parameters(), self.encoder.parameters(), strict=True):
            target_param.lerp_(online_param.detach(), 1.0 - momentum)


def load_frames(video_root: str | Path, image_size: int, stride: int) -> Tensor:
    """Every ``stride``-th frame of every clip of a video set, ``uint8 (n, 3, S, S)`` at ``image_size``."""
    from vlajepa.data.videos import VideoSet

    videos = VideoSet(video_root)
    if len(videos) == 0:
        raise ValueError(f"{video_root}: the video set has no clips")
    chunks = []
    for i in range(len(videos)):
        clip = torch.from_numpy(videos.frames(i)[::stride].copy())  # (t, h, w, 3)
        clip = rearrange(clip, "t h w c -> t c h w")
        if clip.shape[-1] != image_size or clip.shape[-2] != image_size:
            resized = F.interpolate(clip.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
            clip = resized.round().clamp(0, 255).to(torch.uint8)
        chunks.append(clip)
    return torch.cat(chunks)


def _lr_factor(step: int, config: EncoderPretrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class PretrainResult:
    """What :func:`pretrain_encoder` leaves behind."""

    encoder_path: Path  # the frozen-target weights (``target.checkpoint``)
    losses: list[float]  # loss of every step
    frames: int  # frames in the training pool
    wall_time_s: float  # training time, data loading included


def pretrain_encoder(
    config: EncoderPretrainConfig,
    video_root: str | Path,
    out: str | Path,
    *,
    frames: Tensor | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> PretrainResult:
    """Train :class:`MaskedLatentModel` on the video set's frames; write ``out/encoder.safetensors`` + config.

    ``frames`` (``uint8 (n, 3, S, S)``) replaces reading ``video_root`` (tests, benchmarks).
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    pool = load_frames(video_root, config.image_size, config.frame_stride) if frames is None else frames
    model = MaskedLatentModel(config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    generator = torch.Generator().manual_seed(config.seed)
    encoder_path = out / ENCODER_FILE
    atomic_write_json(
        out / CONFIG_FILE,
        {"pretrain": config.to_dict(), "target": _target_snippet(config, encoder_path), "frames": len(pool)},
    )
    metrics = open(out / METRICS_FILE, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally
    losses: list[float] = []
    target_stds: list[float] = []
    try:
        for step in range(config.steps):
            index = torch.randint(0, len(pool), (config.batch_size,), generator=generator)
            batch = pool[index].float().div_(255.0)
            if torch.rand((), generator=generator) < 0.5:  # horizontal flip: cheap augmentation
                batch = batch.flip(-1)
            loss, logs = model(batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; last save is {encoder_path}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            model.update_target(config.ema_momentum)
            losses.append(loss.item())
            target_stds.append(logs["target_std"])
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                line = {
                    "step": done,
                    "loss": float(np.mean(losses[-config.log_every :])),
                    "target_std": float(np.mean(target_stds[-config.log_every :])),
                    "lr": scheduler.get_last_lr()[0],
                    "elapsed_s": round(time.perf_counter() - start, 2),
                }
                metrics.write(json.dumps(line) + "\n")
                metrics.flush()
                if on_log is not None:
                    on_log(line)
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_encoder(model.target, encoder_path)
    finally:
        metrics.close()
    if config.steps == 0:
        save_encoder(model.target, encoder_path)
    return PretrainResult(encoder_path, losses, len(pool), time.perf_counter() - start)


def _target_snippet(config: EncoderPretrainConfig, encoder_path: Path) -> dict[str, Any]:
    """The ``model.target`` config section that loads this encoder as a frozen target."""
    return {"kind": "frozen", "checkpoint": str(encoder_path), "vision": dataclasses.asdict(config.vision)}
