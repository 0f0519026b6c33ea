"""Action-free video sets: clips with a caption and no actions (the "human video" of VLA-JEPA).

Layout::

    <root>/videos/<index>.mp4     one clip per row of captions.csv (.webm is accepted when reading)
    <root>/captions.csv           header ``index,text`` (+ optional ``task``); index = the clip's file stem
    <root>/meta.json              fps, height, width, count, num_frames per clip, provenance

The CSV header is honoured by name, never by column position, and a missing column is an error naming the
file. Frames come back RGB. :class:`VideoSetWriter` builds the folder in ``<root>.partial`` and renames it on
:meth:`VideoSetWriter.finalize`, so an interrupted run leaves nothing that :class:`VideoSet` accepts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vlajepa.constants import TASK
from vlajepa.data.errors import DatasetFormatError, MissingDatasetFileError
from vlajepa.data.staging import StagedDirectory
from vlajepa.data.video_io import DEFAULT_CODEC, encode_video, read_video
from vlajepa.io_utils import atomic_write_text

CAPTIONS_FILE = "captions.csv"
META_FILE = "meta.json"
VIDEOS_DIR = "videos"
FORMAT_NAME = "vlajepa.videoset"
FORMAT_VERSION = 1
INDEX_COLUMN, TEXT_COLUMN = "index", "text"
_VIDEO_SUFFIXES = (".mp4", ".webm")


class VideoSetWriter(StagedDirectory):
    """Write clips and captions into a new video set folder.

    Args:
        root: final folder; must not exist yet.
        fps: frame rate of every clip.
        codec, crf, pix_fmt: video encoder, quality and pixel format (see :mod:`vlajepa.data.video_io`).
        provenance: free-form description of where the clips come from (stored in ``meta.json``).
    """

    what = "video set"

    def __init__(
        self,
        root: str | Path,
        fps: int,
        codec: str = DEFAULT_CODEC,
        provenance: Mapping[str, Any] | None = None,
        *,
        crf: int | None = None,
        pix_fmt: str = "yuv420p",
    ) -> None:
        super().__init__(root)
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.codec = codec
        self.crf = crf
        self.pix_fmt = pix_fmt
        self.provenance = dict(provenance or {})
        self._stage()
        (self.partial_root / VIDEOS_DIR).mkdir()
        self._rows: list[dict[str, str]] = []
        self._num_frames: list[int] = []
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add_video(self, frames: np.ndarray, text: str, task: str | None = None) -> str:
        """Encode one RGB clip ``uint8 (t, h, w, 3)`` with its caption; returns its index (file stem)."""
        self._check_open()
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(
                f"video frames must be uint8 (t, h, w, 3) with t >= 1, got {frames.dtype} {frames.shape}"
            )
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"caption text must be a non-empty string, got {text!r}")
        size = (int(frames.shape[1]), int(frames.shape[2]))
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise ValueError(f"all clips of a video set share one size {self._size} (h, w); got {size}")
        index = f"{len(self._rows):06d}"
        encode_video(
            frames, self.partial_root / VIDEOS_DIR / f"{index}.mp4", self.fps,
            codec=self.codec, crf=self.crf, pix_fmt=self.pix_fmt,
        )
        self._rows.append({INDEX_COLUMN: index, TEXT_COLUMN: text, TASK: task or ""})
        self._num_frames.append(len(frames))
        return index

    def finalize(self) -> Path:
        """Write ``captions.csv`` and ``meta.json`` (last), then rename the folder to ``root``."""
        self._check_open()
        if not self._rows:
            raise ValueError(f"no videos were added to {self.root}; nothing to finalize")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[INDEX_COLUMN, TEXT_COLUMN, TASK], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.partial_root / CAPTIONS_FILE, buffer.getvalue())
        assert self._size is not None
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fps": self.fps,
            "height": self._size[0],
            "width": self._size[1],
            "count": len(self._rows),
            "num_frames": self._num_frames,
            "provenance": self.provenance,
        }
        atomic_write_text(self.partial_root / META_FILE, json.dumps(meta, indent=2))
        return self._publish()


class VideoSet:
    """Read a video set folder: ``len(videos)``, ``videos.captions[i]``, ``videos.frames(i)``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = self._read_meta(self.root / META_FILE)
        self.ids, self.captions, self.tasks = self._read_captions(self.root / CAPTIONS_FILE)
        if len(self.ids) != self.meta["count"]:
            raise DatasetFormatError(
                f"{self.root / CAPTIONS_FILE}: {len(self.ids)} rows but {self.root / META_FILE} says "
                f"count={self.meta['count']}"
            )

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise MissingDatasetFileError(f"{path} not found: {path.parent} is not a finished video set")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetFormatError(f"{path}: not valid JSON ({exc})") from exc
        missing = [key for key in ("fps", "height", "width", "count") if key not in meta]
        if missing:
            raise DatasetFormatError(f"{path}: missing keys {missing}")
        return meta

    @staticmethod
    def _read_captions(path: Path) -> tuple[list[str], list[str], list[str | None]]:
        if not path.is_file():
            raise MissingDatasetFileError(f"{path} not found")
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [col for col in (INDEX_COLUMN, TEXT_COLUMN) if col not in header]
            if missing:
                raise DatasetFormatError(
                    f"{path}: header must name columns {INDEX_COLUMN!r} and {TEXT_COLUMN!r} "
                    f"(missing {missing}); found header {header}"
                )
            reader.fieldnames = header
            rows = list(reader)
        ids, captions, tasks = [], [], []
        for line, row in enumerate(rows, start=2):
            index, text = (row.get(INDEX_COLUMN) or "").strip(), row.get(TEXT_COLUMN) or ""
            if not index or not text.strip():
                raise DatasetFormatError(
                    f"{path}: line {line} has an empty {INDEX_COLUMN!r} or {TEXT_COLUMN!r}"
                )
            ids.append(index)
            captions.append(text)
            tasks.append(row.get(TASK) or None)
        if len(set(ids)) != len(ids):
            raise DatasetFormatError(f"{path}: duplicate values in column {INDEX_COLUMN!r}")
        return ids, captions, tasks

    @property
    def fps(self) -> int:
        return self.meta["fps"]

    def __len__(self) -> int:
        return len(self.ids)

    def video_path(self, i: int) -> Path:
        """File of clip ``i`` (``videos/<index>.mp4``, or ``.webm``)."""
        stem = self.root / VIDEOS_DIR / self.ids[i]
        for suffix in _VIDEO_SUFFIXES:
            candidate = stem.with_name(stem.name + suffix)
            if candidate.is_file():
                return candidate
        raise MissingDatasetFileError(f"{stem}.mp4 not found (clip {i} of {self.root / CAPTIONS_FILE})")

    def num_frames(self, i: int) -> int:
        """Length of clip ``i`` as recorded in ``meta.json`` (decodes the clip if not recorded)."""
        recorded = self.meta.get("num_frames")
        if isinstance(recorded, list) and len(recorded) == len(self):
            return int(recorded[i])
        return len(self.frames(i))

    def frames(self, i: int) -> np.ndarray:
        """All frames of clip ``i`` as RGB ``uint8 (t, h, w, 3)``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for a video set of {len(self)} clips")
        return read_video(self.video_path(i % len(self)))
