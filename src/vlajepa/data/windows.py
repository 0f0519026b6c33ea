"""Training samples ("windows") in the model's batch format, and the robot:video mixture that feeds the trainer.

A window starts at one frame ``t`` of an episode (robot data) or a clip (action-free video) and holds:

- ``observation.images.<camera>`` ``(3, S, S)``: frame ``t`` only, the student's one image;
- ``future.images.<camera>`` ``(T, 3, S, S)``: frames ``t, t+s, ..., t+(T-1)s``, target-encoder input only;
- ``future_is_pad`` ``(T,)``: True where the clip runs past the episode end (the frame repeats the last one and
  the world-model loss leaves it out);
- ``future.frame_ids`` ``(T,)``: rows of those frames in a latent cache (see :mod:`vlajepa.data.latent_cache`);
- ``task``: the instruction (robot) or caption (video);
- robot windows only: ``observation.state`` ``(S,)`` and ``action`` ``(H, A)`` normalized, ``action_is_pad``
  ``(H,)`` (padded steps repeat the last action and are masked out of the loss, never zero-filled silently).

With ``future_images=False`` the clip frames are not decoded: a trainer with a latent cache reads
``future.frame_ids`` instead.

:class:`MixtureLoader` draws homogeneous batches (all robot or all video) from several window datasets in a
deterministic robot:video ratio. The ``k``-th batch is a pure function of the seed and ``k``, so saving the number
of batches consumed is enough to resume exactly, even with prefetching DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, default_collate

from vlajepa.config import PolicyConfig
from vlajepa.constants import (
    ACTION,
    ACTION_IS_PAD,
    FUTURE_FRAME_IDS,
    FUTURE_IS_PAD,
    OBS_STATE,
    PAD_SUFFIX,
    TASK,
    future_image_key,
    image_key,
)
from vlajepa.data.errors import DatasetFormatError
from vlajepa.data.lerobot import INFO_PATH, STATS_PATH, LeRobotDataset, load_info
from vlajepa.data.video_io import DecodeCache
from vlajepa.data.videos import CAPTIONS_FILE, META_FILE, VideoSet
from vlajepa.normalize import Normalizer, compute_stats

FRAME_INDEX = "index"  # LeRobot's global frame index column, queried with the clip's deltas for frame ids


def to_float_frames(frames: np.ndarray) -> Tensor:
    """RGB ``uint8 (t, h, w, 3)`` -> float ``(t, 3, h, w)`` in ``[0, 1]`` (the LeRobot reader's conversion)."""
    chw = np.ascontiguousarray(rearrange(frames, "t h w c -> t c h w"), dtype=np.float32)
    return torch.from_numpy(chw / np.float32(255.0))


def resize_frames(frames: Tensor, size: int) -> Tensor:
    """Float frames ``(..., 3, h, w)`` -> ``(..., 3, size, size)``; the policy's resize (bilinear, antialias)."""
    if frames.shape[-2:] == (size, size):
        return frames
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0).reshape(*lead, 3, size, size)


def clip_offsets(config: PolicyConfig) -> list[int]:
    """Frame offsets ``0, s, ..., (T-1)s`` of the future clip."""
    return [k * config.frame_stride for k in range(config.clip_length)]


def _file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Robot windows (LeRobot v3)
# ----------------------------------------------------------------------------------------------------------


class RobotWindows(Dataset):
    """Windows of a LeRobot v3 dataset: current image, future clip, state, action chunk, instruction.

    Args:
        root: dataset folder (holding ``meta/``).
        config: model config: cameras, image size, clip length T, frame stride s, chunk size H.
        normalizer: normalization of ``observation.state`` and ``action``; ``None`` builds one from
            ``meta/stats.json`` (or from the data when the file lacks a feature) with ``state_mode`` and
            ``action_mode``. The trainer saves it with every checkpoint.
        future_images: decode the future clip (False when a latent cache stands in for it).
        with_actions: False drops ``action`` and the state's role as a label: the windows then train the world
            model only (world-model pretraining on robot data).
        decode_cache: passed to :class:`~vlajepa.data.lerobot.LeRobotDataset`.
        episodes: episode indices to use (``None``: all).
    """

    def __init__(
        self,
        root: str | Path,
        config: PolicyConfig,
        *,
        normalizer: Normalizer | None = None,
        state_mode: str = "min_max",
        action_mode: str = "min_max",
        future_images: bool = True,
        with_actions: bool = True,
        decode_cache: DecodeCache | bool | None = True,
        episodes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.config = config
        self.future_images = future_images
        self.with_actions = with_actions
        info = load_info(self.root)
        self._check_features(info["features"])
        fps = float(info["fps"])
        clip_s = [k / fps for k in clip_offsets(config)]
        deltas: dict[str, list[float]] = {FRAME_INDEX: clip_s}
        if with_actions:
            deltas[ACTION] = [h / fps for h in range(config.chunk_size)]
        if future_images:
            deltas |= {image_key(camera): clip_s for camera in config.cameras}
        self.dataset = LeRobotDataset(root, episodes=episodes, delta_timestamps=deltas, decode_cache=decode_cache)
        index = self.dataset.column(FRAME_INDEX).astype(np.int64)
        self._row_of_index = np.full(int(index.max()) + 1, -1, dtype=np.int64)
        self._row_of_index[index] = np.arange(len(index))
        self.has_state = OBS_STATE in self.dataset.features
        self.normalizer = normalizer or self.default_normalizer(state_mode, action_mode)
        self._frames: LeRobotDataset | None = None

    def _check_features(self, features: Mapping[str, Any]) -> None:
        where = self.root / INFO_PATH
        videos = [key for key, feature in features.items() if feature.get("dtype") == "video"]
        missing = [image_key(c) for c in self.config.cameras if image_key(c) not in videos]
        if missing:
            raise DatasetFormatError(
                f"{where}: no video feature {missing} for the config's cameras {list(self.config.cameras)}; "
                f"the dataset has {videos}"
            )
        widths = {OBS_STATE: self.config.state_dim}
        if self.with_actions:
            widths[ACTION] = self.config.action_dim
        for key, width in widths.items():
            if key not in features:
                if key == OBS_STATE:
                    continue
                raise DatasetFormatError(f"{where}: no {key!r} feature (robot windows need actions)")
            shape = list(features[key]["shape"])
            if shape != [width]:
                raise DatasetFormatError(f"{where}: {key!r} has shape {shape}; the config expects [{width}]")

    def default_normalizer(self, state_mode: str, action_mode: str) -> Normalizer:
        """Normalizer from ``meta/stats.json``, falling back to statistics of the data itself."""
        modes = {ACTION: action_mode} if self.with_actions else {}
        if self.has_state:
            modes[OBS_STATE] = state_mode
        stats = {}
        for key in modes:
            saved = self.dataset.meta.stats.get(key)
            stats[key] = saved if saved else compute_stats(self.dataset.column(key))
        return Normalizer.from_stats(stats, modes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.dataset[idx]
        size = self.config.image_size
        window: dict[str, Any] = {}
        for camera in self.config.cameras:
            frames = resize_frames(item[image_key(camera)], size)  # (T, 3, S, S), or (3, S, S) without clip
            if self.future_images:
                window[image_key(camera)] = frames[0].clone()
                window[future_image_key(camera)] = frames
            else:
                window[image_key(camera)] = frames
        window[FUTURE_IS_PAD] = item[FRAME_INDEX + PAD_SUFFIX]
        window[FUTURE_FRAME_IDS] = torch.from_numpy(self._row_of_index[item[FRAME_INDEX].numpy()])
        if self.has_state:
            window[OBS_STATE] = self.normalizer.normalize(OBS_STATE, item[OBS_STATE].float())
        if self.with_actions:
            window[ACTION] = self.normalizer.normalize(ACTION, item[ACTION].float())
            window[ACTION_IS_PAD] = item[ACTION + PAD_SUFFIX]
        window[TASK] = item[TASK]
        return window

    # -- latent cache interface ----------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """Frames addressed by ``future.frame_ids`` (every frame of the selected episodes)."""
        return len(self.dataset)

    def frames(self, rows: Sequence[int]) -> list[Tensor]:
        """Frames at ``rows``, one float ``(n, 3, S, S)`` tensor per camera, resized like the windows."""
        if self._frames is None:
            self._frames = LeRobotDataset(
                self.root, episodes=self.dataset.episodes, decode_cache=self.dataset.decode_cache or True
            )
        items = [self._frames[int(row)] for row in rows]
        return [
            resize_frames(torch.stack([item[image_key(camera)] for item in items]), self.config.image_size)
            for camera in self.config.cameras
        ]

    def identity(self) -> dict[str, Any]:
        """What the frames of this dataset are: a latent cache built from other frames must not be reused."""
        meta_files = [self.root / INFO_PATH, self.root / STATS_PATH, *sorted((self.root / "meta").rglob("*.parquet"))]
        return {
            "kind": "lerobot",
            "root": str(self.root.resolve()),
            "meta_sha256": _file_digest(*meta_files),
            "episodes": self.dataset.episodes,
            "frames": self.num_frames,
            "cameras": list(self.config.cameras),
            "image_size": self.config.image_size,
        }


# ----------------------------------------------------------------------------------------------------------
# Video windows (action-free)
# ----------------------------------------------------------------------------------------------------------


class VideoWindows(Dataset):
    """Windows of an action-free video set: current frame, future clip and caption; no state, no action.

    Every frame of every clip starts a window. ``frame_stride`` counts frames of the video, which the project's
    video sets record at the robot data's frame rate. Frames are RGB and resized to ``config.image_size``.

    Args:
        root: video set folder (``videos/``, ``captions.csv``, ``meta.json``).
        config: model config; it must have a single camera (a video set has one view).
        future_images: decode the future clip (False when a latent cache stands in for it).
        decode_cache: cache of decoded clips (``True``: a private in-memory 4 GiB LRU cache).
    """

    def __init__(
        self,
        root: str | Path,
        config: PolicyConfig,
        *,
        future_images: bool = True,
        decode_cache: DecodeCache | bool | None = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.config = config
        self.future_images = future_images
        if len(config.cameras) != 1:
            raise ValueError(
                f"{self.root}: a video set has one view but the config has cameras {list(config.cameras)}; "
                "train on video with a single-camera config"
            )
        self.camera = config.cameras[0]
        self.videos = VideoSet(self.root)
        if decode_cache is True:
            decode_cache = DecodeCache(max_bytes=4 << 30)
        self.decode_cache: DecodeCache | None = decode_cache or None
        lengths = np.asarray([self.videos.num_frames(i) for i in range(len(self.videos))], dtype=np.int64)
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # first frame id of each clip

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _clip(self, clip: int) -> np.ndarray:
        """All RGB frames of a clip, ``uint8 (n, h, w, 3)``, checked against the recorded length."""
        path = self.videos.video_path(clip)
        frames = self.decode_cache.segment(path, None, None)[0] if self.decode_cache else self.videos.frames(clip)
        if len(frames) != self.lengths[clip]:
            raise DatasetFormatError(
                f"{path}: decoded {len(frames)} frames but {self.root / META_FILE} records {self.lengths[clip]}"
            )
        return frames

    def locate(self, idx: int) -> tuple[int, int]:
        """``(clip, frame)`` of window ``idx``."""
        if not 0 <= idx < len(self):
            raise IndexError(f"window {idx} out of range for {len(self)} video frames")
        clip = int(np.searchsorted(self.offsets, idx, side="right") - 1)
        return clip, idx - int(self.offsets[clip])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        clip, start = self.locate(int(idx))
        wanted = start + np.asarray(clip_offsets(self.config), dtype=np.int64)
        last = int(self.lengths[clip]) - 1
        is_pad = wanted > last
        frame_ids = np.minimum(wanted, last)
        frames = self._clip(clip)
        size = self.config.image_size
        window: dict[str, Any] = {}
        if self.future_images:
            clip_frames = resize_frames(to_float_frames(frames[frame_ids]), size)  # (T, 3, S, S)
            window[image_key(self.camera)] = clip_frames[0].clone()
            window[future_image_key(self.camera)] = clip_frames
        else:
            window[image_key(self.camera)] = resize_frames(to_float_frames(frames[start : start + 1]), size)[0]
        window[FUTURE_IS_PAD] = torch.from_numpy(is_pad)
        window[FUTURE_FRAME_IDS] = torch.from_numpy(frame_ids + self.offsets[clip])
        window[TASK] = self.videos.captions[clip]
        return window

    # -- latent cache interface ----------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return len(self)

    def frames(self, rows: Sequence[int]) -> list[Tensor]:
        """Frames at global ``rows`` as one float ``(n, 3, S, S)`` tensor (the single camera)."""
        out = []
        for row in rows:
            clip, frame = self.locate(int(row))
            out.append(self._clip(clip)[frame])
        return [resize_frames(to_float_frames(np.stack(out)), self.config.image_size)]

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "videos",
            "root": str(self.root.resolve()),
            "meta_sha256": _file_digest(self.root / META_FILE, self.root / CAPTIONS_FILE),
            "frames": self.num_frames,
            "image_size": self.config.image_size,
        }


# ----------------------------------------------------------------------------------------------------------
# Robot:video mixture
# ----------------------------------------------------------------------------------------------------------


def source_schedule(weights: Sequence[float], num_batches: int, counts: Sequence[int] | None = None) -> list[int]:
    """Source of each of the next ``num_batches`` batches: smooth weighted round robin.

    Batch ``k`` goes to the source whose next batch is most overdue, ``argmin_j (count_j + 1) / w_j`` (ties to
    the lower index): weights 1:1 alternate, 3:1 give ``r r r v r r r v ...``. ``counts`` (batches each source
    had so far; default none) continues a schedule. Deterministic, no RNG.
    """
    if not weights or min(weights) < 0 or max(weights) <= 0:
        raise ValueError(f"mixture weights must be >= 0 with at least one > 0, got {list(weights)}")
    counts = list(counts) if counts is not None else [0] * len(weights)
    active = [j for j, w in enumerate(weights) if w > 0]
    order = []
    for _ in range(num_batches):
        source = min(active, key=lambda j: ((counts[j] + 1) / weights[j], j))
        counts[source] += 1
        order.append(source)
    return order


def source_counts(weights: Sequence[float], num_batches: int) -> list[int]:
    """Batches each source had among the first ``num_batches``."""
    order = source_schedule(weights, num_batches)
    return [order.count(j) for j in range(len(weights))]


class MixtureBatchSampler(Sampler[list[int]]):
    """Infinite stream of index batches over a :class:`~torch.utils.data.ConcatDataset` of sources.

    Batch ``k`` takes its source from :func:`source_schedule`; a source's ``n``-th global batch covers positions
    ``[n*B, (n+1)*B)`` of that source's stream, the concatenation of one seeded permutation per epoch (``B`` =
    batch size x processes). Each process gets its own contiguous slice of every global batch. Everything is a
    function of ``(seed, k)``, so ``start`` resumes exactly.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        batch_sizes: Sequence[int],
        seed: int,
        *,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not len(sizes) == len(weights) == len(batch_sizes):
            raise ValueError("sizes, weights and batch_sizes need one entry per source")
        empty = [j for j, (n, w) in enumerate(zip(sizes, weights, strict=True)) if w > 0 and n == 0]
        if empty:
            raise ValueError(f"mixture sources {empty} have weight > 0 but no samples")
        self.sizes = [int(n) for n in sizes]
        self.weights = [float(w) for w in weights]
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.seed = int(seed)
        self.start = int(start)
        self.rank = rank
        self.world_size = world_size
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 8:
                self._perm_cache.clear()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + source * 10_007 + epoch)
            self._perm_cache[key] = torch.randperm(self.sizes[source], generator=generator).numpy()
        return self._perm_cache[key]

    def _positions(self, source: int, first: int, count: int) -> np.ndarray:
        """Local indices at stream positions ``first .. first+count-1`` of ``source``."""
        size = self.sizes[source]
        out = np.empty(count, dtype=np.int64)
        for i, position in enumerate(range(first, first + count)):
            out[i] = self._permutation(source, position // size)[position % size]
        return out

    def batch(self, source: int, n: int) -> list[int]:
        """Global dataset indices of this process's part of the ``n``-th batch of ``source``."""
        per_process = self.batch_sizes[source]
        global_size = per_process * self.world_size
        first = n * global_size + self.rank * per_process
        return (self._positions(source, first, per_process) + self.offsets[source]).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        counts = source_counts(self.weights, self.start)
        while True:
            for source in source_schedule(self.weights, 256, counts):
                yield self.batch(source, counts[source])
                counts[source] += 1


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack windows into a batch (``task`` becomes a list of strings)."""
    return default_collate(items)


class MixtureLoader:
    """Batches from named window datasets in a fixed ratio: ``next(loader) -> (source_name, batch)``.

    ``state_dict()`` is the number of batches handed out; ``load_state_dict`` restarts the stream there (batches
    prefetched by workers beyond that point are dropped), which makes resumption exact.

    Args:
        sources: ``{name: dataset}``, e.g. ``{"robot": RobotWindows, "video": VideoWindows}``.
        weights: ``{name: weight}``; batches of each source in proportion ``weight`` (0: never).
        batch_sizes: ``{name: samples per batch per process}``.
        seed: seed of the per-epoch permutations.
        num_workers: DataLoader worker processes (0: load in this process).
        rank, world_size: this process among the data-parallel processes.
    """

    def __init__(
        self,
        sources: Mapping[str, Dataset],
        weights: Mapping[str, float],
        batch_sizes: Mapping[str, int],
        seed: int,
        *,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.names = list(sources)
        self.datasets = [sources[name] for name in self.names]
        self.weights = [float(weights.get(name, 0.0)) for name in self.names]
        self.batch_sizes = [int(batch_sizes[name]) for name in self.names]
        self.seed = seed
        self.num_workers = num_workers
        self.rank, self.world_size = rank, world_size
        self.position = 0
        self._concat = ConcatDataset(self.datasets)
        self._iterator: Iterator[dict[str, Any]] | None = None
        self._order: list[int] = []
        self._counts = [0] * len(self.names)

    def _start(self) -> None:
        sampler = MixtureBatchSampler(
            [len(d) for d in self.datasets],
            self.weights,
            self.batch_sizes,
            self.seed,
            start=self.position,
            rank=self.rank,
            world_size=self.world_size,
        )
        loader = DataLoader(
            self._concat,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_windows,
            # A private generator: creating an iterator must not draw from the global torch RNG, or a resumed
            # run (which creates it at another time) would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False,
            prefetch_factor=2 if self.num_workers else None,
        )
        self._iterator = iter(loader)
        self._counts = source_counts(self.weights, self.position)

    def __iter__(self) -> MixtureLoader:
        return self

    def __next__(self) -> tuple[str, dict[str, Any]]:
        if self._iterator is None:
            self._start()
        assert self._iterator is not None
        source = source_schedule(self.weights, 1, self._counts)[0]
        self._counts[source] += 1
        batch = next(self._iterator)
        self.position += 1
        return self.names[source], batch

    def state_dict(self) -> dict[str, Any]:
        """Position and what it refers to (sizes and weights are checked on load)."""
        return {
            "batches": self.position,
            "seed": self.seed,
            "sources": self.names,
            "sizes": [len(d) for d in self.datasets],
            "weights": self.weights,
            "batch_sizes": self.batch_sizes,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state["batches"]``; the data, ratio and batch sizes must be the ones saved."""
        current = self.state_dict()
        keys = ("seed", "sources", "sizes", "weights", "batch_sizes", "world_size")
        changed = [k for k in keys if state.get(k) != current[k]]
        if changed:
            details = {k: (state.get(k), current[k]) for k in changed}
            raise ValueError(
                f"cannot resume the data stream exactly: {', '.join(changed)} changed (saved, now): "
                f"{json.dumps(details)}"
            )
        self.position = int(state["batches"])
        self._iterator = None

    def close(self) -> None:
        """Stop worker processes (if any)."""
        self._iterator = None
