"""Read LeRobot v3.0 datasets (``meta/info.json``, ``data/*.parquet``, ``videos/*.mp4``) without LeRobot.

The interface mirrors LeRobot's: :class:`LeRobotDatasetMetadata` for the ``meta/`` folder and
:class:`LeRobotDataset`, a ``torch.utils.data.Dataset`` whose items carry the same keys, dtypes and
``delta_timestamps`` semantics as LeRobot's ``__getitem__``:

- every delta (seconds) must be a multiple of ``1/fps`` within ``tolerance_s``, and becomes a frame offset
  ``round(delta * fps)``;
- a query that falls outside the current episode is clamped to the episode's first/last frame and flagged
  ``True`` in ``<key>_is_pad`` so losses can mask it out;
- images are ``float32`` channel-first in ``[0, 1]``: ``(c, h, w)``, or ``(t, c, h, w)`` with deltas.

Video frames are located through the episode table (``videos/<key>/chunk_index``, ``file_index``,
``from_timestamp``): many episodes share one mp4 and an episode's frame at time ``ts`` sits at
``from_timestamp + ts`` in the file. A :class:`~vlajepa.data.video_io.DecodeCache` decodes each episode
segment once so random access during training is an array lookup instead of a seek and decode per frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from einops import rearrange
from torch.utils.data import Dataset

from vlajepa.constants import PAD_SUFFIX, TASK
from vlajepa.data.errors import DatasetFormatError, MissingDatasetFileError
from vlajepa.data.video_io import DecodeCache, decode_frames_at

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DEFAULT_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_CHUNK_SIZE = 1000  # max files per chunk folder
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

# Per-frame bookkeeping columns every LeRobot dataset has, besides the user's features.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
_VISUAL_DTYPES = ("video", "image")
_UNSUPPORTED_DTYPES = ("image", "audio")
_REQUIRED_INFO_KEYS = ("codebase_version", "fps", "features", "data_path", "total_episodes", "total_frames")


# ----------------------------------------------------------------------------------------------------------
# delta_timestamps -> frame offsets (LeRobot semantics)
# ----------------------------------------------------------------------------------------------------------


def check_delta_timestamps(
    delta_timestamps: dict[str, Sequence[float]], fps: float, tolerance_s: float
) -> None:
    """Raise ``ValueError`` unless every delta is a multiple of ``1/fps`` to within ``tolerance_s`` seconds.

    Only then does ``timestamp + delta`` land on a recorded frame of the dataset.
    """
    off_grid = {
        key: [ts for ts in deltas if abs(ts * fps - round(ts * fps)) / fps > tolerance_s]
        for key, deltas in delta_timestamps.items()
    }
    off_grid = {key: bad for key, bad in off_grid.items() if bad}
    if off_grid:
        raise ValueError(
            f"delta_timestamps must be multiples of 1/{fps} s (+/- tolerance_s={tolerance_s}); "
            f"off the grid: {off_grid}"
        )


def get_delta_indices(delta_timestamps: dict[str, Sequence[float]], fps: float) -> dict[str, list[int]]:
    """Frame offsets ``round(delta * fps)`` for each key."""
    return {key: [round(ts * fps) for ts in deltas] for key, deltas in delta_timestamps.items()}


def query_indices(
    abs_index: int, ep_start: int, ep_end: int, deltas: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``abs_index + deltas`` clamped into ``[ep_start, ep_end)``, and the pad mask.

    Clamped positions repeat the episode's edge frame and are flagged ``True``: LeRobot's ``*_is_pad``.
    """
    wanted = abs_index + np.asarray(deltas, dtype=np.int64)
    is_pad = (wanted < ep_start) | (wanted >= ep_end)
    return np.clip(wanted, ep_start, ep_end - 1), is_pad


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def load_info(root: str | Path) -> dict[str, Any]:
    """Parse and check ``meta/info.json``; a dataset without it is unfinished or not a dataset."""
    path = Path(root) / INFO_PATH
    if not path.is_file():
        raise MissingDatasetFileError(
            f"{path} not found: {Path(root)} is not a finished LeRobot dataset (no meta/info.json)"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object")
    missing = [key for key in _REQUIRED_INFO_KEYS if key not in info]
    if missing:
        raise DatasetFormatError(f"{path}: missing keys {missing}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetFormatError(
            f"{path}: codebase_version {info['codebase_version']!r} is not supported, only "
            f"{CODEBASE_VERSION!r} (convert older datasets with LeRobot's convert_dataset_v21_to_v30)"
        )
    return info


def read_parquet(path: Path, required: Iterable[str] = (), columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet file; a missing, unreadable or incomplete file raises an error naming it."""
    if not path.is_file():
        raise MissingDatasetFileError(f"{path} not found")
    # ParquetFile rather than pq.read_table: the latter imports pandas (~1 s) to honour pandas metadata.
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFormatError(f"{path}: not a readable parquet file ({exc})") from exc
    names = parquet.schema_arrow.names
    missing = [name for name in required if name not in names]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; present: {names}")
    try:
        return parquet.read(columns=list(columns) if columns is not None else None, use_pandas_metadata=False)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetFormatError(f"{path}: cannot read parquet data ({exc})") from exc
    finally:
        parquet.close()


def column_to_numpy(column: pa.ChunkedArray | pa.Array, source: Path, name: str) -> np.ndarray:
    """Arrow column (scalars or possibly nested fixed-length lists) -> numpy ``(n, *shape)``."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        raise DatasetFormatError(f"{source}: column {name!r} has {array.null_count} null value(s)")
    shape: list[int] = []
    while (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or pa.types.is_fixed_size_list(array.type)
    ):
        lengths = np.unique(array.value_lengths().to_numpy(zero_copy_only=False)) if len(array) else [0]
        if len(lengths) > 1:
            raise DatasetFormatError(f"{source}: column {name!r} holds lists of different lengths {lengths}")
        shape.append(int(lengths[0]))
        array = array.flatten()
        if array.null_count:
            raise DatasetFormatError(f"{source}: column {name!r} has null elements")
    values = array.to_numpy(zero_copy_only=False)
    rows = len(values) // int(np.prod(shape)) if shape and np.prod(shape) else len(values)
    return values.reshape(rows, *shape)


def _read_tasks(path: Path) -> list[str]:
    """``meta/tasks.parquet`` -> task strings ordered by ``task_index``.

    LeRobot writes it from a pandas frame whose index holds the task text, so the text column is the pandas
    index column (``__index_level_0__``) unless the file has an explicit ``task`` column.
    """
    table = read_parquet(path, required=["task_index"])
    text_column = TASK if TASK in table.column_names else None
    pandas_meta = (table.schema.metadata or {}).get(b"pandas")
    if text_column is None and pandas_meta:
        index_columns = json.loads(pandas_meta).get("index_columns", [])
        text_column = next((c for c in index_columns if isinstance(c, str) and c in table.column_names), None)
    if text_column is None:
        raise DatasetFormatError(f"{path}: no task text column ('task' or a pandas index column)")
    texts = [str(t) for t in table[text_column].to_pylist()]
    indices = column_to_numpy(table["task_index"], path, "task_index").astype(np.int64)
    if sorted(indices.tolist()) != list(range(len(indices))):
        raise DatasetFormatError(f"{path}: task_index must be 0..{len(indices) - 1}, got {sorted(indices)}")
    ordered = [""] * len(texts)
    for index, text in zip(indices.tolist(), texts, strict=True):
        ordered[index] = text
    return ordered


def episode_required_columns(video_keys: Iterable[str]) -> list[str]:
    """Columns of ``meta/episodes/*.parquet`` this reader relies on."""
    columns = [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    for key in video_keys:
        columns += [
            f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
    return columns


class EpisodeTable:
    """The episode table (``meta/episodes/*.parquet``), indexed by ``episode_index`` like LeRobot's.

    ``table[i]`` is the row of episode ``i`` as a dict; ``table["length"]`` a whole column (numpy for numeric
    scalar columns, a list otherwise).
    """

    def __init__(self, table: pa.Table, source: str) -> None:
        self._table = table
        self.source = source
        self._columns: dict[str, Any] = {}

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def __len__(self) -> int:
        return self._table.num_rows

    def column(self, name: str) -> Any:
        if name not in self._columns:
            if name not in self._table.column_names:
                raise KeyError(f"{self.source}: no episode column {name!r}")
            column = self._table[name]
            if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                self._columns[name] = column.to_numpy()
            else:
                self._columns[name] = column.to_pylist()
        return self._columns[name]

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.column(key)
        index = int(key)
        if not 0 <= index < len(self):
            raise IndexError(f"episode {index} out of range, the dataset has {len(self)} episodes")
        return {name: _python_scalar(self.column(name)[index]) for name in self.columns}


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _read_episodes(root: Path, video_keys: list[str]) -> EpisodeTable:
    files = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise MissingDatasetFileError(f"{root / EPISODES_DIR}: no episode files (chunk-*/file-*.parquet)")
    required = episode_required_columns(video_keys)
    tables = [read_parquet(path, required=required) for path in files]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise DatasetFormatError(
            f"{root / EPISODES_DIR}: episode files have incompatible schemas ({exc})"
        ) from exc
    order = np.argsort(table["episode_index"].to_numpy(), kind="stable")
    table = table.take(pa.array(order))
    episode_index = table["episode_index"].to_numpy()
    if not np.array_equal(episode_index, np.arange(len(episode_index))):
        raise DatasetFormatError(f"{root / EPISODES_DIR}: episode_index must be 0..{len(episode_index) - 1}")
    return EpisodeTable(table, str(root / EPISODES_DIR))


def _stats_to_numpy(stats: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    return {
        key: {name: np.asarray(value) for name, value in feature.items()} for key, feature in stats.items()
    }


# ----------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------


class LeRobotDatasetMetadata:
    """Everything under ``<root>/meta``: info, stats, tasks and the episode table."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.info = load_info(self.root)
        unsupported = {
            k: f["dtype"] for k, f in self.features.items() if f.get("dtype") in _UNSUPPORTED_DTYPES
        }
        if unsupported:
            raise DatasetFormatError(
                f"{self.root / INFO_PATH}: features {unsupported} are not supported "
                "(store cameras as 'video')"
            )
        if self.video_keys and not self.info.get("video_path"):
            raise DatasetFormatError(f"{self.root / INFO_PATH}: video features but no 'video_path' template")
        self.tasks: list[str] = _read_tasks(self.root / TASKS_PATH)
        self.episodes = _read_episodes(self.root, self.video_keys)
        stats_path = self.root / STATS_PATH
        try:
            self.stats = _stats_to_numpy(json.loads(stats_path.read_text())) if stats_path.is_file() else {}
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise DatasetFormatError(f"{stats_path}: unreadable statistics ({exc})") from exc
        if len(self.episodes) != self.total_episodes:
            raise DatasetFormatError(
                f"{self.root / INFO_PATH}: total_episodes={self.total_episodes} but "
                f"{self.episodes.source} lists {len(self.episodes)} episodes"
            )

    @property
    def fps(self) -> int:
        return self.info["fps"]

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [key for key, ft in self.features.items() if ft["dtype"] == "video"]

    @property
    def camera_keys(self) -> list[str]:
        return [key for key, ft in self.features.items() if ft["dtype"] in _VISUAL_DTYPES]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: tuple(ft["shape"]) for key, ft in self.features.items()}

    @property
    def names(self) -> dict[str, Any]:
        return {key: ft.get("names") for key, ft in self.features.items()}

    @property
    def robot_type(self) -> str | None:
        return self.info.get("robot_type")

    @property
    def total_episodes(self) -> int:
        return self.info["total_episodes"]

    @property
    def total_frames(self) -> int:
        return self.info["total_frames"]

    @property
    def total_tasks(self) -> int:
        return len(self.tasks)

    @property
    def data_path(self) -> str:
        return self.info["data_path"]

    @property
    def video_path(self) -> str | None:
        return self.info.get("video_path")

    def get_task_index(self, task: str) -> int | None:
        """``task_index`` of an instruction, or ``None`` if the dataset does not have it."""
        return self.tasks.index(task) if task in self.tasks else None

    def get_data_file_path(self, episode_index: int) -> Path:
        """Path (relative to root) of the parquet file holding the episode's rows."""
        chunk = int(self.episodes["data/chunk_index"][episode_index])
        file = int(self.episodes["data/file_index"][episode_index])
        return Path(self.data_path.format(chunk_index=chunk, file_index=file))

    def get_video_file_path(self, episode_index: int, video_key: str) -> Path:
        """Path (relative to root) of the mp4 holding the episode's frames of camera ``video_key``."""
        assert self.video_path is not None
        chunk = int(self.episodes[f"videos/{video_key}/chunk_index"][episode_index])
        file = int(self.episodes[f"videos/{video_key}/file_index"][episode_index])
        return Path(self.video_path.format(video_key=video_key, chunk_index=chunk, file_index=file))


# ----------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------


class LeRobotDataset(Dataset):
    """Frames of a local LeRobot v3.0 dataset, one item per frame, LeRobot's keys and padding semantics.

    Args:
        root: dataset folder (the one holding ``meta/``).
        episodes: episode indices to load (``None`` = all). ``idx`` then runs over the selected frames only.
        delta_timestamps: ``{key: [seconds, ...]}`` relative to the current frame, e.g. an action chunk
            ``{"action": [0, 0.1, ...]}`` or an observation history ``{"observation.state": [-0.1, 0]}``.
        tolerance_s: allowed gap between a requested and a recorded timestamp.
        decode_cache: ``True`` = a private in-memory :class:`DecodeCache` (1 GiB), ``False``/``None`` = decode
            from the file on every access (LeRobot's behaviour, slow), or a cache instance to share or to give
            a ``disk_dir``.
        image_transforms: optional callable applied to each camera tensor of an item.
    """

    def __init__(
        self,
        root: str | Path,
        episodes: Sequence[int] | None = None,
        delta_timestamps: dict[str, Sequence[float]] | None = None,
        tolerance_s: float = 1e-4,
        decode_cache: DecodeCache | bool | None = True,
        image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.meta = LeRobotDatasetMetadata(self.root)
        self.tolerance_s = tolerance_s
        self.image_transforms = image_transforms
        if decode_cache is True:
            decode_cache = DecodeCache()
        self.decode_cache: DecodeCache | None = decode_cache or None

        self.episodes = self._check_episodes(episodes)
        self.delta_timestamps = dict(delta_timestamps) if delta_timestamps else None
        self.delta_indices: dict[str, list[int]] | None = None
        if self.delta_timestamps is not None:
            unknown = [key for key in self.delta_timestamps if key not in self.meta.features]
            if unknown:
                raise KeyError(f"delta_timestamps keys {unknown} are not features of {self.root}")
            check_delta_timestamps(self.delta_timestamps, self.fps, tolerance_s)
            self.delta_indices = get_delta_indices(self.delta_timestamps, self.fps)

        # Per-frame columns stored in the parquet files (everything but videos).
        keys = [key for key, ft in self.meta.features.items() if ft["dtype"] not in _VISUAL_DTYPES]
        self._data_keys = keys + [key for key in DEFAULT_FEATURES if key not in keys]
        self._columns = self._load_columns()
        self._index = self._columns["index"]
        self._episode_index = self._columns["episode_index"]
        self._abs_to_row = np.full(int(self._index.max()) + 1 if len(self._index) else 0, -1, dtype=np.int64)
        self._abs_to_row[self._index] = np.arange(len(self._index))
        self._check_episode_rows()
        # Per-episode lookups resolved once: __getitem__ then does array indexing only.
        self._ep_start = np.asarray(self.meta.episodes["dataset_from_index"], dtype=np.int64)
        self._ep_end = np.asarray(self.meta.episodes["dataset_to_index"], dtype=np.int64)
        self._video_files = {
            key: [
                self.root / self.meta.get_video_file_path(ep, key) for ep in range(self.meta.total_episodes)
            ]
            for key in self.meta.video_keys
        }

    # -- loading -------------------------------------------------------------------------------------------

    def _check_episodes(self, episodes: Sequence[int] | None) -> list[int] | None:
        if episodes is None:
            return None
        selected = [int(e) for e in episodes]
        bad = [e for e in selected if not 0 <= e < self.meta.total_episodes]
        if bad:
            raise IndexError(
                f"episodes {bad} not in {self.root} (it has {self.meta.total_episodes} episodes)"
            )
        return selected

    def _load_columns(self) -> dict[str, Any]:
        episodes = self.episodes if self.episodes is not None else range(self.meta.total_episodes)
        files = sorted({self.meta.get_data_file_path(ep) for ep in episodes})
        keys = self._data_keys
        parts: dict[str, list[Any]] = {key: [] for key in keys}
        for relative in files:
            path = self.root / relative
            table = read_parquet(path, required=keys, columns=keys)
            if self.episodes is not None:
                mask = np.isin(column_to_numpy(table["episode_index"], path, "episode_index"), self.episodes)
                table = table.filter(pa.array(mask))
            for key in keys:
                if self.meta.features.get(key, {}).get("dtype") == "string":
                    parts[key].extend(table[key].to_pylist())
                else:
                    parts[key].append(column_to_numpy(table[key], path, key))
        columns: dict[str, Any] = {}
        for key, chunks in parts.items():
            if chunks and isinstance(chunks[0], np.ndarray):
                columns[key] = np.concatenate(chunks)
            else:
                columns[key] = chunks
        order = np.argsort(columns["index"], kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            columns = {
                k: v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]
                for k, v in columns.items()
            }
        return columns

    def _check_episode_rows(self) -> None:
        """Every selected episode's ``[dataset_from_index, dataset_to_index)`` must be present in the data."""
        table = self.meta.episodes
        starts, ends = table["dataset_from_index"], table["dataset_to_index"]
        episodes = self.episodes if self.episodes is not None else range(self.meta.total_episodes)
        for ep in episodes:
            start, end = int(starts[ep]), int(ends[ep])
            rows = self._abs_to_row[start:end] if end <= len(self._abs_to_row) else np.array([-1])
            if end <= start or len(rows) != end - start or (rows < 0).any():
                raise DatasetFormatError(
                    f"{self.root / self.meta.get_data_file_path(ep)}: rows with index {start}..{end - 1} "
                    f"of episode {ep} (per {table.source}) are missing"
                )
            if not (self._episode_index[rows] == ep).all():
                raise DatasetFormatError(
                    f"{self.root / self.meta.get_data_file_path(ep)}: rows {start}..{end - 1} do not all "
                    f"belong to episode {ep}"
                )

    # -- properties ----------------------------------------------------------------------------------------

    @property
    def fps(self) -> int:
        return self.meta.fps

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.meta.features

    @property
    def num_frames(self) -> int:
        return len(self._index)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes) if self.episodes is not None else self.meta.total_episodes

    def __len__(self) -> int:
        return self.num_frames

    def column(self, key: str) -> np.ndarray:
        """A per-frame column (not videos) over the selected frames, e.g. all actions for statistics."""
        if key not in self._columns:
            raise KeyError(f"{key!r} is not a parquet column of {self.root} (videos are decoded per item)")
        return self._columns[key]

    # -- items ---------------------------------------------------------------------------------------------

    def __getitem__(self, idx: int) -> dict[str, Any]:
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} frames")
        ep = int(self._episode_index[idx])
        abs_index = int(self._index[idx])
        item: dict[str, Any] = {key: self._value(key, idx) for key in self._data_keys}

        query_rows: dict[str, np.ndarray] = {}
        if self.delta_indices is not None:
            start, end = int(self._ep_start[ep]), int(self._ep_end[ep])
            for key, deltas in self.delta_indices.items():
                absolute, is_pad = query_indices(abs_index, start, end, deltas)
                query_rows[key] = self._abs_to_row[absolute]
                item[f"{key}{PAD_SUFFIX}"] = torch.from_numpy(is_pad)
                if key not in self.meta.video_keys:
                    item[key] = self._stacked(key, query_rows[key])

        for key in self.meta.video_keys:
            rows = query_rows.get(key, np.array([idx]))
            timestamps = self._columns["timestamp"][rows].astype(np.float64)
            frames = self._decode(key, ep, timestamps)  # (t, h, w, c) uint8
            # In numpy: a torch op on the permuted view is a slow strided, multi-threaded copy (~40x here).
            chw = np.ascontiguousarray(rearrange(frames, "t h w c -> t c h w"), dtype=np.float32)
            video = torch.from_numpy(chw / np.float32(255.0))
            item[key] = video if key in query_rows else video[0]
            if self.image_transforms is not None:
                item[key] = self.image_transforms(item[key])

        item[TASK] = self.meta.tasks[int(self._columns["task_index"][idx])]
        return item

    def _value(self, key: str, row: int) -> Any:
        column = self._columns[key]
        if isinstance(column, list):
            return column[row]
        return torch.from_numpy(np.array(column[row]))

    def _stacked(self, key: str, rows: np.ndarray) -> Any:
        column = self._columns[key]
        if isinstance(column, list):
            return [column[r] for r in rows.tolist()]
        return torch.from_numpy(column[rows])

    def _decode(self, key: str, ep: int, timestamps: np.ndarray) -> np.ndarray:
        """RGB frames of camera ``key`` at episode-relative ``timestamps``."""
        episode = self.meta.episodes
        from_ts = float(episode[f"videos/{key}/from_timestamp"][ep])
        path = self._video_files[key][ep]
        if self.decode_cache is None:
            return decode_frames_at(path, from_ts + timestamps, self.tolerance_s)
        to_ts = float(episode[f"videos/{key}/to_timestamp"][ep])
        half_frame = 0.5 / self.fps  # segment bounds between frames: robust to float rounding of from/to
        return self.decode_cache.frames_at(
            path, from_ts - half_frame, to_ts - half_frame, from_ts + timestamps, self.tolerance_s
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, episodes={self.num_episodes}, "
            f"frames={self.num_frames}, features={list(self.features)})"
        )
