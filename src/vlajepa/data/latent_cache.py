"""Frozen-target latent cache: encode every frame of a dataset once, then look the latents up while training.

A frozen target encoder maps a frame to the same latents at every step, so encoding the ``T`` frames of each
window's future clip again and again (and decoding them) is wasted work. :func:`build_latent_cache` encodes every
frame of a window dataset once (batched, no gradient) and :class:`LatentCache` serves ``future.latents``
``(b, T, v*N, d)`` from a batch's ``future.frame_ids``.

The cache lives in memory or as a ``.npy`` file memory-mapped from ``<directory>/<name>-<key>/``. The key hashes
the target encoder's weights and architecture, the image size, the storage dtype and the dataset's identity
(path, metadata digest, frame count): a cache built from other weights or other data is never reused. Building
writes into a temporary folder renamed into place at the end, so an interrupted build leaves nothing reusable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from tqdm.auto import tqdm

from vlajepa.constants import FUTURE_FRAME_IDS, FUTURE_LATENTS, future_image_key
from vlajepa.io_utils import atomic_write_json

if TYPE_CHECKING:
    from vlajepa.nn.target import TargetEncoder  # the frozen encoder a cache stores the outputs of

LATENTS_FILE = "latents.npy"
META_FILE = "meta.json"
FORMAT_NAME = "vlajepa.latent_cache/v1"
DTYPES = {"float32": np.float32, "float16": np.float16}


class FrameSource(Protocol):
    """What a window dataset offers the cache (see :mod:`vlajepa.data.windows`)."""

    @property
    def num_frames(self) -> int: ...

    def frames(self, rows: list[int]) -> list[Tensor]: ...

    def identity(self) -> dict[str, Any]: ...


def target_fingerprint(target: TargetEncoder) -> str:
    """SHA-256 of the target encoder's architecture and weights."""
    digest = hashlib.sha256()
    digest.update(repr(target.encoder).encode())
    for name, tensor in sorted(target.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(target: TargetEncoder, source: FrameSource, dtype: str) -> tuple[str, dict[str, Any]]:
    """Short key and the full description it hashes."""
    description = {
        "format": FORMAT_NAME,
        "target": target_fingerprint(target),
        "dataset": source.identity(),
        "dtype": dtype,
    }
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    return key, description


class LatentCache:
    """Latents ``(num_frames, v*N, d)`` of every frame of one dataset, indexed by ``future.frame_ids``."""

    def __init__(self, latents: np.ndarray, key: str, path: Path | None = None) -> None:
        self.latents = latents
        self.key = key
        self.path = path  # folder of a disk cache; None in memory

    def __len__(self) -> int:
        return len(self.latents)

    def lookup(self, frame_ids: Tensor) -> Tensor:
        """``frame_ids`` ``(b, T)`` -> float32 latents ``(b, T, v*N, d)``."""
        ids = frame_ids.cpu().numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.latents)):
            raise IndexError(f"frame ids out of range [0, {len(self.latents)}) of latent cache {self.key}")
        rows = np.asarray(self.latents[ids.reshape(-1)], dtype=np.float32)  # (b*T, n, d)
        return rearrange(torch.from_numpy(rows), "(b t) n d -> b t n d", b=ids.shape[0])

    def attach(self, batch: dict[str, Any], cameras: tuple[str, ...]) -> dict[str, Any]:
        """Replace a batch's ``future.frame_ids`` (and any future images) by ``future.latents``."""
        out = {k: v for k, v in batch.items() if k != FUTURE_FRAME_IDS}
        for camera in cameras:
            out.pop(future_image_key(camera), None)
        out[FUTURE_LATENTS] = self.lookup(batch[FUTURE_FRAME_IDS])
        return out


@torch.no_grad()
def encode_frames(
    target: TargetEncoder, source: FrameSource, out: np.ndarray, batch_size: int = 256, progress: bool = False
) -> None:
    """Write the latents of every frame of ``source`` into ``out`` ``(num_frames, v*N, d)``."""
    total = source.num_frames
    bar = tqdm(total=total, desc="latent cache", unit="frame", disable=not progress, leave=False)
    device = next(target.parameters()).device
    for first in range(0, total, batch_size):
        rows = list(range(first, min(first + batch_size, total)))
        views = [frames.to(device)[:, None] for frames in source.frames(rows)]  # each (n, 1, 3, S, S)
        latents = target(views)[:, 0]  # (n, v*N, d): each frame encoded on its own
        out[first : first + len(rows)] = latents.float().cpu().numpy().astype(out.dtype, copy=False)
        bar.update(len(rows))
    bar.close()


def build_latent_cache(
    target: TargetEncoder,
    source: FrameSource,
    *,
    name: str,
    directory: str | Path | None = None,
    dtype: str = "float32",
    batch_size: int = 256,
    progress: bool = False,
) -> LatentCache:
    """Encode every frame of ``source`` with the frozen ``target``: in memory (``directory=None``) or reused from
    / written to ``<directory>/<name>-<key>/latents.npy`` (memory-mapped).
    """
    if target.kind != "frozen":
        raise ValueError(f"a latent cache needs a frozen target encoder, not {target.kind!r} (it changes each step)")
    if dtype not in DTYPES:
        raise ValueError(f"latent cache dtype must be one of {list(DTYPES)}, got {dtype!r}")
    key, description = cache_key(target, source, dtype)
    shape = (source.num_frames, *_latent_shape(target, source))
    if directory is None:
        latents = np.empty(shape, dtype=DTYPES[dtype])
        encode_frames(target, source, latents, batch_size, progress)
        return LatentCache(latents, key)

    folder = Path(directory) / f"{name}-{key}"
    cached = _open_existing(folder, description, shape, dtype)
    if cached is not None:
        return LatentCache(cached, key, folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        latents = np.lib.format.open_memmap(tmp / LATENTS_FILE, mode="w+", dtype=DTYPES[dtype], shape=shape)
        encode_frames(target, source, latents, batch_size, progress)
        latents.flush()
        del latents
        with open(tmp / LATENTS_FILE, "rb+") as handle:
            os.fsync(handle.fileno())
        atomic_write_json(tmp / META_FILE, {**description, "shape": list(shape)})  # last: marks completeness
        if folder.exists():  # an incomplete or damaged cache under the same key (a valid one was reused above)
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LatentCache(np.load(folder / LATENTS_FILE, mmap_mode="r"), key, folder)


def _latent_shape(target: TargetEncoder, source: FrameSource) -> tuple[int, int]:
    views = len(source.frames([0]))
    return views * target.tokens_per_view, target.dim


def _open_existing(
    folder: Path, description: Mapping[str, Any], shape: tuple[int, ...], dtype: str
) -> np.ndarray | None:
    """The memory-mapped latents of a complete cache matching ``description``, else None."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        latents = np.load(folder / LATENTS_FILE, mmap_mode="r")
    except (OSError, ValueError):
        return None
    expected = {**description, "shape": list(shape)}
    if meta != json.loads(json.dumps(expected)) or latents.shape != shape or latents.dtype != DTYPES[dtype]:
        return None
    return latents
