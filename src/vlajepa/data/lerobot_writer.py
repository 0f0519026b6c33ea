"""Write LeRobot v3.0 datasets, one whole episode at a time, atomically.

Layout produced (what LeRobot 0.4 writes and reads)::

    meta/info.json  meta/stats.json  meta/tasks.parquet  meta/episodes/chunk-000/file-000.parquet
    data/chunk-000/file-000.parquet                       (many episodes per file)
    videos/<camera key>/chunk-000/file-000.mp4            (many episodes per file, back to back)

Memory stays bounded by one episode: each episode's frames are encoded as soon as it is added, appended to
the camera's current mp4 (a new file starts once ``video_files_size_in_mb`` is reached), its rows appended
to the current parquet file, and its statistics reduced to per-episode numbers (images: a 256-bin histogram
per channel, from which exact min/max/mean/std/quantiles follow). Everything is built in ``<root>.partial``
and renamed to ``<root>`` by :meth:`LeRobotDatasetWriter.finalize`, with ``meta/info.json`` written last, so
an interrupted run never leaves a folder that looks like a finished dataset.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlajepa.data.lerobot import (
    CODEBASE_VERSION,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_DATA_PATH,
    DEFAULT_EPISODES_PATH,
    DEFAULT_FEATURES,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
)
from vlajepa.data.staging import StagedDirectory
from vlajepa.data.video_io import CODEC_STREAM_NAMES, DEFAULT_CODEC, VideoEncoder, VideoEncoding
from vlajepa.io_utils import atomic_write, atomic_write_text

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
_MB = 1024 * 1024


def _next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    file += 1
    return (chunk + 1, 0) if file >= chunks_size else (chunk, file)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


# ----------------------------------------------------------------------------------------------------------
# Statistics (LeRobot's stats.json / episode stats layout)
# ----------------------------------------------------------------------------------------------------------


def numeric_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """min/max/mean/std/count/quantiles over frames of ``(n, d)`` values, each of shape ``(d,)``."""
    if values.dtype == np.bool_:
        values = values.astype(np.float64)  # quantiles interpolate, which booleans cannot
    return {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": values.mean(axis=0, dtype=np.float64),
        "std": values.std(axis=0, dtype=np.float64),
        "count": np.array([len(values)]),
        **{name: np.quantile(values, q, axis=0) for name, q in QUANTILES.items()},
    }


def channel_histogram(frames: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histogram ``(3, 256)`` of ``uint8 (t, h, w, 3)`` frames."""
    flat = frames.reshape(-1, frames.shape[-1])
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(flat.shape[1])]).astype(np.int64)


def histogram_stats(hist: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
    """Image statistics in ``[0, 1]`` per channel, shaped ``(3, 1, 1)`` as LeRobot stores them.

    Exact, not sampled: quantiles use numpy's linear interpolation on the sorted pixel values the histogram
    stands for.
    """
    levels = np.arange(hist.shape[1], dtype=np.float64) / 255.0
    total = hist.sum(axis=1, keepdims=True).astype(np.float64)
    mean = (hist * levels).sum(axis=1, keepdims=True) / total
    var = (hist * (levels - mean) ** 2).sum(axis=1, keepdims=True) / total
    present = hist > 0
    cumulative = np.cumsum(hist, axis=1)

    def value_at_rank(rank: np.ndarray) -> np.ndarray:
        return np.array([np.searchsorted(cumulative[c], rank[c], side="right") for c in range(len(hist))])

    stats = {
        "min": present.argmax(axis=1) / 255.0,
        "max": (hist.shape[1] - 1 - present[:, ::-1].argmax(axis=1)) / 255.0,
        "mean": mean[:, 0],
        "std": np.sqrt(var[:, 0]),
    }
    for name, q in QUANTILES.items():
        position = q * (total[:, 0] - 1)
        low = np.floor(position)
        high = np.minimum(low + 1, total[:, 0] - 1)
        v_low, v_high = value_at_rank(low), value_at_rank(high)
        stats[name] = (v_low + (position - low) * (v_high - v_low)) / 255.0
    shaped = {name: value.reshape(-1, 1, 1) for name, value in stats.items()}
    shaped["count"] = np.array([num_frames])
    return shaped


def _jsonable(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {
        key: {name: np.asarray(v).tolist() for name, v in feature.items()} for key, feature in stats.items()
    }


# ----------------------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------------------


class LeRobotDatasetWriter(StagedDirectory):
    """Build a LeRobot v3.0 dataset episode by episode.

    Args:
        root: final dataset folder; must not exist yet.
        fps: frames per second of every stream.
        features: LeRobot features dict, e.g. ``{"observation.images.front": {"dtype": "video",
            "shape": [96, 96, 3]}, "observation.state": {"dtype": "float32", "shape": [4]}, ...}``.
            Per-frame bookkeeping (``timestamp``, ``frame_index``, ``episode_index``, ``index``,
            ``task_index``) is added automatically.
        robot_type: free text stored in ``info.json``.
        provenance: free-form description of how the data were made (e.g. collection seeds), stored as
            ``info.json["provenance"]`` when given; ``self.provenance`` may be filled in until :meth:`finalize`.
        codec: video encoder (``libsvtav1`` like LeRobot, or ``libx264``: faster to encode).
        gop, crf, pix_fmt: keyframe interval, quality and pixel format, see
            :class:`~vlajepa.data.video_io.VideoEncoding`.
    """

    what = "dataset"

    def __init__(
        self,
        root: str | Path,
        fps: int,
        features: Mapping[str, Mapping[str, Any]],
        robot_type: str | None = None,
        codec: str = DEFAULT_CODEC,
        *,
        gop: int = 2,
        crf: int | None = None,
        pix_fmt: str = "yuv420p",
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(root)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.robot_type = robot_type
        self.provenance = dict(provenance) if provenance is not None else None
        self.encoding = VideoEncoding(codec=codec, pix_fmt=pix_fmt, gop=gop, crf=crf)
        self.chunks_size = chunks_size
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        self.features = self._check_features(features)
        self.video_keys = [k for k, ft in self.features.items() if ft["dtype"] == "video"]
        self.data_keys = [k for k, ft in self.features.items() if ft["dtype"] != "video"]
        self._schema = self._data_schema()

        self._stage()

        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._metadata_names: tuple[str, ...] | None = None  # extra episode-table columns, fixed by the first episode
        self._num_frames = 0
        self._numeric: dict[str, list[np.ndarray]] = {k: [] for k in self.data_keys}
        self._histograms: dict[str, np.ndarray] = {
            k: np.zeros((3, 256), dtype=np.int64) for k in self.video_keys
        }
        self._data_file = (0, 0)
        self._data_writer: pq.ParquetWriter | None = None
        self._data_bytes = 0
        self._video_files = {k: (0, 0) for k in self.video_keys}
        self._encoders: dict[str, VideoEncoder] = {}
        self._video_codec: str | None = None

    # -- setup ---------------------------------------------------------------------------------------------

    def _check_features(self, features: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        checked: dict[str, dict[str, Any]] = {}
        for key, spec in features.items():
            if key in DEFAULT_FEATURES:
                raise ValueError(f"feature {key!r} is added by the writer; remove it from features")
            if "dtype" not in spec or "shape" not in spec:
                raise ValueError(f"feature {key!r} needs 'dtype' and 'shape', got {dict(spec)}")
            spec = copy.deepcopy(dict(spec))
            spec["shape"] = [int(n) for n in spec["shape"]]
            if spec["dtype"] == "video":
                if len(spec["shape"]) != 3 or spec["shape"][2] != 3:
                    raise ValueError(
                        f"video feature {key!r}: shape must be [height, width, 3], got {spec['shape']}"
                    )
                height, width = spec["shape"][:2]
                if self.encoding.pix_fmt.startswith("yuv420") and (height % 2 or width % 2):
                    raise ValueError(
                        f"video feature {key!r}: {self.encoding.pix_fmt} needs even height and width"
                    )
                spec.setdefault("names", ["height", "width", "channels"])
            else:
                try:
                    np.dtype(spec["dtype"])
                except TypeError as exc:
                    raise ValueError(f"feature {key!r}: unsupported dtype {spec['dtype']!r}") from exc
                if len(spec["shape"]) != 1:
                    raise ValueError(f"feature {key!r}: only 1-D shapes are supported, got {spec['shape']}")
                spec.setdefault("names", None)
            checked[key] = spec
        for key, spec in DEFAULT_FEATURES.items():
            checked[key] = copy.deepcopy(spec)
        return checked

    def _data_schema(self) -> pa.Schema:
        """Parquet schema: shape ``[1]`` is a scalar column, ``[n]`` a fixed-size list, as in LeRobot."""
        fields, hf_features = [], {}
        for key in self.data_keys:
            spec = self.features[key]
            scalar = pa.from_numpy_dtype(np.dtype(spec["dtype"]))
            value = {"dtype": spec["dtype"], "_type": "Value"}
            if spec["shape"] == [1]:
                fields.append(pa.field(key, scalar))
                hf_features[key] = value
            else:
                fields.append(pa.field(key, pa.list_(scalar, spec["shape"][0])))
                hf_features[key] = {"feature": value, "length": spec["shape"][0], "_type": "List"}
        # The Hugging Face `datasets` schema, so datasets.load_dataset("parquet") restores the feature types.
        metadata = {"huggingface": json.dumps({"info": {"features": hf_features}})}
        return pa.schema(fields, metadata=metadata)

    # -- adding episodes -----------------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def _validate(self, frames: Mapping[str, Any], task: str) -> tuple[int, dict[str, np.ndarray]]:
        self._check_open()
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be a non-empty instruction string, got {task!r}")
        expected = set(self.video_keys) | {k for k in self.data_keys if k not in DEFAULT_FEATURES}
        missing, extra = sorted(expected - set(frames)), sorted(set(frames) - expected)
        if missing or extra:
            raise ValueError(f"episode features do not match: missing {missing}, unexpected {extra}")
        arrays = {key: np.asarray(frames[key]) for key in sorted(expected)}
        lengths = {key: (len(a) if a.ndim else 0) for key, a in arrays.items()}
        length = next(iter(lengths.values()))
        if length == 0 or any(n != length for n in lengths.values()):
            raise ValueError(f"every feature needs the same number of frames (>= 1), got {lengths}")
        checked = {}
        for key, array in arrays.items():
            spec = self.features[key]
            want = (length, *spec["shape"])
            if spec["dtype"] == "video":
                if array.shape != want or array.dtype != np.uint8:
                    raise ValueError(
                        f"feature {key!r}: expected uint8 frames of shape {want}, "
                        f"got {array.dtype} {array.shape}"
                    )
                checked[key] = array
                continue
            if spec["shape"] == [1] and array.shape == (length,):
                array = array[:, None]
            if array.shape != want:
                raise ValueError(f"feature {key!r}: expected shape {want}, got {array.shape}")
            dtype = np.dtype(spec["dtype"])
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise ValueError(f"feature {key!r}: cannot store {array.dtype} values as {dtype}")
            array = array.astype(dtype, copy=False)
            if np.issubdtype(dtype, np.floating):
                bad = ~np.isfinite(array).reshape(length, -1).all(axis=1)
                if bad.any():
                    frames_at = np.flatnonzero(bad)[:10].tolist()
                    raise ValueError(f"feature {key!r}: NaN or infinite values at frame(s) {frames_at}")
            checked[key] = array
        return length, checked

    def add_episode(self, frames: Mapping[str, Any], task: str, metadata: Mapping[str, Any] | None = None) -> int:
        """Validate, encode and append one episode; returns its ``episode_index``.

        Args:
            frames: one array per feature, all of length ``T``: video keys ``uint8 (T, H, W, 3)`` RGB, other
                keys ``(T, *shape)``.
            task: the episode's instruction.
            metadata: extra per-episode columns of the episode table (e.g. ``{"success": True}``): scalar
                bool/int/float/str values, the same names for every episode of the dataset.
        """
        extra = self._check_metadata(metadata or {})
        length, arrays = self._validate(frames, task)
        episode_index = len(self._episodes)
        start = self._num_frames
        task_index = self._tasks.setdefault(task, len(self._tasks))
        frame_index = np.arange(length, dtype=np.int64)
        arrays |= {
            "timestamp": (frame_index / self.fps).astype(np.float32)[:, None],
            "frame_index": frame_index[:, None],
            "episode_index": np.full((length, 1), episode_index, dtype=np.int64),
            "index": np.arange(start, start + length, dtype=np.int64)[:, None],
            "task_index": np.full((length, 1), task_index, dtype=np.int64),
        }

        row: dict[str, Any] = {"episode_index": episode_index, "tasks": [task], "length": length}
        row |= self._write_data(arrays, length)
        row |= {"dataset_from_index": start, "dataset_to_index": start + length}
        for key in self.video_keys:
            row |= self._write_video(key, arrays[key])
        stats: dict[str, dict[str, np.ndarray]] = {}
        for key in self.video_keys:
            hist = channel_histogram(arrays[key])
            self._histograms[key] += hist
            stats[key] = histogram_stats(hist, length)
        for key in self.data_keys:
            self._numeric[key].append(arrays[key])
            stats[key] = numeric_stats(arrays[key])
        for key, feature in _jsonable(stats).items():
            row |= {f"stats/{key}/{name}": value for name, value in feature.items()}
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        row |= extra
        self._episodes.append(row)
        self._metadata_names = tuple(sorted(extra))
        self._num_frames += length
        return episode_index

    def _check_metadata(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        reserved = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index")
        clashes = [k for k in metadata if k in reserved or k.startswith(("data/", "videos/", "stats/", "meta/"))]
        if clashes:
            raise ValueError(f"episode metadata {clashes} would overwrite the episode table's own columns")
        bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(v, (bool, int, float, str))}
        if bad:
            raise ValueError(f"episode metadata must be scalar bool/int/float/str values, got {bad}")
        if self._metadata_names is not None and tuple(sorted(metadata)) != self._metadata_names:
            # the episode table is one parquet schema: every row needs the same columns
            raise ValueError(
                f"episode metadata {sorted(metadata)} differs from the first episode's {list(self._metadata_names)}"
            )
        return dict(metadata)

    def _write_data(self, arrays: Mapping[str, np.ndarray], length: int) -> dict[str, int]:
        columns = []
        for key in self.data_keys:
            values = arrays[key]
            field = self._schema.field(key)
            if pa.types.is_fixed_size_list(field.type):
                flat = pa.array(values.reshape(-1), type=field.type.value_type)
                columns.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
            else:
                columns.append(pa.array(values.reshape(length), type=field.type))
        table = pa.Table.from_arrays(columns, schema=self._schema)
        if (
            self._data_writer is not None
            and self._data_bytes + table.nbytes > self.data_files_size_in_mb * _MB
        ):
            self._close_data_file()
            self._data_file = _next_file(*self._data_file, self.chunks_size)
        if self._data_writer is None:
            path = self.partial_root / DEFAULT_DATA_PATH.format(
                chunk_index=self._data_file[0], file_index=self._data_file[1]
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
            self._data_bytes = 0
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        return {"data/chunk_index": self._data_file[0], "data/file_index": self._data_file[1]}

    def _close_data_file(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            _fsync(Path(self._data_writer.where))
            self._data_writer = None

    def _write_video(self, key: str, frames: np.ndarray) -> dict[str, Any]:
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.bytes_written >= self.video_files_size_in_mb * _MB:
            encoder.close()
            del self._encoders[key]
            self._video_files[key] = _next_file(*self._video_files[key], self.chunks_size)
            encoder = None
        chunk, file = self._video_files[key]
        if encoder is None:
            path = self.partial_root / DEFAULT_VIDEO_PATH.format(
                video_key=key, chunk_index=chunk, file_index=file
            )
            height, width = self.features[key]["shape"][:2]
            encoder = VideoEncoder(path, self.fps, width, height, self.encoding)
            self._encoders[key] = encoder
            self._video_codec = encoder.codec
        from_timestamp = encoder.num_frames / self.fps
        encoder.write(frames)
        return {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": from_timestamp,
            f"videos/{key}/to_timestamp": encoder.num_frames / self.fps,
        }

    # -- finishing -----------------------------------------------------------------------------------------

    def finalize(self) -> Path:
        """Close all files, write ``meta/``, and move the dataset to ``root``; returns ``root``."""
        self._check_open()
        if not self._episodes:
            raise ValueError(f"no episodes were added to {self.root}; nothing to finalize")
        self._close_data_file()
        for encoder in self._encoders.values():
            encoder.close()
        self._encoders.clear()

        meta = self.partial_root / "meta"
        self._write_tasks(meta.parent / TASKS_PATH)
        episodes = pa.Table.from_pylist(self._episodes)
        episodes_path = self.partial_root / DEFAULT_EPISODES_PATH.format(chunk_index=0, file_index=0)
        atomic_write(episodes_path, lambda tmp: pq.write_table(episodes, tmp))
        atomic_write_text(
            self.partial_root / STATS_PATH, json.dumps(_jsonable(self._global_stats()), indent=4)
        )
        atomic_write_text(self.partial_root / INFO_PATH, json.dumps(self._info(), indent=4))

        return self._publish()

    def _write_tasks(self, path: Path) -> None:
        """``tasks.parquet`` as pandas writes it (task text as the index), which is how LeRobot reads it."""
        texts = sorted(self._tasks, key=self._tasks.__getitem__)
        pandas_meta = {
            "index_columns": ["__index_level_0__"],
            "column_indexes": [
                {
                    "name": None,
                    "field_name": None,
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": {"encoding": "UTF-8"},
                }
            ],
            "columns": [
                {
                    "name": "task_index",
                    "field_name": "task_index",
                    "pandas_type": "int64",
                    "numpy_type": "int64",
                    "metadata": None,
                },
                {
                    "name": None,
                    "field_name": "__index_level_0__",
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": None,
                },
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3",
        }
        schema = pa.schema(
            [pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.string())],
            metadata={"pandas": json.dumps(pandas_meta)},
        )
        table = pa.Table.from_arrays(
            [pa.array([self._tasks[t] for t in texts], pa.int64()), pa.array(texts, pa.string())],
            schema=schema,
        )
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))

    def _global_stats(self) -> dict[str, dict[str, np.ndarray]]:
        stats = {key: histogram_stats(self._histograms[key], self._num_frames) for key in self.video_keys}
        for key in self.data_keys:
            stats[key] = numeric_stats(np.concatenate(self._numeric[key]))
        return stats

    def _info(self) -> dict[str, Any]:
        features = copy.deepcopy(self.features)
        for key in self.video_keys:
            height, width, channels = features[key]["shape"]
            features[key]["info"] = {
                "video.height": height,
                "video.width": width,
                "video.codec": CODEC_STREAM_NAMES.get(self._video_codec or "", self._video_codec),
                "video.pix_fmt": self.encoding.pix_fmt,
                "video.is_depth_map": False,
                "video.fps": self.fps,
                "video.channels": channels,
                "has_audio": False,
            }
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": self._num_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": self.video_files_size_in_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DEFAULT_DATA_PATH,
            "video_path": DEFAULT_VIDEO_PATH if self.video_keys else None,
            "features": features,
        }
        if self.provenance is not None:
            info["provenance"] = dict(self.provenance)
        return info

    def _release(self) -> None:
        for encoder in self._encoders.values():
            encoder.abort()
        self._encoders.clear()
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
