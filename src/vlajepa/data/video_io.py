"""Encode RGB frames to mp4 and decode them back, with PyAV.

Frames are always RGB ``uint8`` arrays ``(t, h, w, 3)``: the encoder converts RGB to the codec's YUV format
and the decoder converts back with ``to_ndarray(format="rgb24")``, so no BGR ever leaks in (unlike OpenCV).

The default codec is AV1 through SVT-AV1 (``libsvtav1``), LeRobot's default, with a keyframe every 2 frames
as LeRobot does, so a random frame costs at most one extra decoded frame. ``libx264`` is the fallback when
SVT-AV1 is not available. Decoding AV1 goes through dav1d.

Every failure to open or decode a file (missing, empty, truncated, corrupt, not a video, frame not found)
raises :class:`VideoDecodeError` naming the file, never a bare FFmpeg traceback.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vlajepa.data.errors import VideoDecodeError
from vlajepa.io_utils import atomic_write

__all__ = [
    "DecodeCache",
    "DecodeCacheStats",
    "VideoDecodeError",
    "VideoEncoder",
    "VideoEncoding",
    "VideoInfo",
    "decode_frame_range",
    "decode_frames_at",
    "decode_segment",
    "encode_video",
    "probe_video",
    "read_video",
    "VIDEO_QUALITIES",
    "video_quality",
]

DEFAULT_CODEC = "libsvtav1"
FALLBACK_CODEC = "libx264"
# Default constant-rate factors: LeRobot's for AV1, x264's own default for H.264.
_DEFAULT_CRF = {"libsvtav1": 30, "libx264": 23}
_CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
# Codec-name as FFmpeg reports it on decode, for info.json ("video.codec").
CODEC_STREAM_NAMES = {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "libx265": "hevc"}

# One decoder thread: frames here are small, thread start-up dominated (1150 vs 650 frames/s at 96x96), and
# parallelism comes from DataLoader worker processes. Raise it for large frames decoded in one process.
DECODE_THREADS = 1
# SVT-AV1 prints a banner and its config to stderr for every encoder it opens (once per episode); keep errors.
os.environ.setdefault("SVT_LOG", "1")


@dataclass(frozen=True)
class VideoEncoding:
    """How frames are compressed."""

    codec: str = DEFAULT_CODEC  # FFmpeg encoder name; falls back to libx264 if unavailable
    pix_fmt: str = "yuv420p"  # chroma-subsampled like LeRobot; needs even width and height
    gop: int = 2  # keyframe interval: 2 keeps random access cheap (LeRobot's choice)
    crf: int | None = None  # quality; None = codec default (30 for AV1, 23 for x264)


# Named encodings for collected data. ``lerobot`` is LeRobot's default (AV1, CRF 30, 4:2:0 chroma). At 96 px it
# blurs the scene and smears the colour of 1-3 px objects (4:2:0 keeps one chroma sample per 2x2 pixels; a 1 px
# goal marker can decode as the table's colour), while evaluation feeds the policy raw renders. ``lossless`` is
# H.264 at QP 0 with full-resolution chroma: decoded frames differ from the renders by the RGB <-> YUV rounding
# only (at most 2 levels), at several times the file size.
VIDEO_QUALITIES: dict[str, VideoEncoding] = {
    "lerobot": VideoEncoding(),
    "lossless": VideoEncoding(codec="libx264", pix_fmt="yuv444p", crf=0),
}


def video_quality(name: str) -> VideoEncoding:
    """The :data:`VIDEO_QUALITIES` encoding called ``name`` (a clear error naming the choices otherwise)."""
    try:
        return VIDEO_QUALITIES[name]
    except KeyError:
        raise ValueError(f"unknown video quality {name!r}; choose from {sorted(VIDEO_QUALITIES)}") from None


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its header."""

    path: Path
    width: int
    height: int
    fps: float
    codec: str  # decoder-side name, e.g. "av1", "h264"
    pix_fmt: str
    num_frames: int  # from the container header; 0 when the container does not say


def resolve_encoder(codec: str) -> str:
    """Return ``codec`` if FFmpeg can encode with it, else the fallback (with a warning)."""
    try:
        av.codec.Codec(codec, "w")
        return codec
    except (av.codec.codec.UnknownCodecError, ValueError):
        if codec == FALLBACK_CODEC:
            raise ValueError(f"video encoder {codec!r} is not available in this PyAV build") from None
        warnings.warn(f"video encoder {codec!r} unavailable; using {FALLBACK_CODEC!r}", stacklevel=2)
        return resolve_encoder(FALLBACK_CODEC)


def _check_frames(frames: np.ndarray, what: str) -> None:
    is_rgb = isinstance(frames, np.ndarray) and frames.ndim == 4 and frames.shape[-1] == 3
    if not is_rgb or frames.dtype != np.uint8:
        shape = getattr(frames, "shape", None)
        dtype = getattr(frames, "dtype", type(frames).__name__)
        raise ValueError(f"{what}: expected uint8 RGB frames of shape (t, h, w, 3), got {dtype} {shape}")


class VideoEncoder:
    """Streams RGB frames into one video file; the file appears under its final name only on :meth:`close`.

    Several episodes can be appended one after another (LeRobot v3 stores many episodes per file); the
    timestamp of frame ``k`` in the file is exactly ``k / fps``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: int,
        width: int,
        height: int,
        encoding: VideoEncoding = VideoEncoding(),  # noqa: B008 - frozen dataclass, safe as default
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.width, self.height = width, height
        if encoding.pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
            raise ValueError(
                f"{self.path}: {encoding.pix_fmt} needs even width and height, got {width}x{height}"
            )
        fmt = _CONTAINER_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{self.path}: unsupported container, use one of {list(_CONTAINER_FORMATS)}")
        self.codec = resolve_encoder(encoding.codec)
        crf = encoding.crf if encoding.crf is not None else _DEFAULT_CRF.get(self.codec)
        options = {"g": str(encoding.gop)}
        if crf is not None:
            options["crf"] = str(crf)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        rate = Fraction(fps).limit_denominator(1001)
        self._container = av.open(str(self._tmp), "w", format=fmt)
        try:
            self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = encoding.pix_fmt
        except BaseException:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._time_base = 1 / rate
        self._pix_fmt = encoding.pix_fmt
        self.num_frames = 0
        self.bytes_written = 0
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        """Append RGB frames ``(t, h, w, 3)`` uint8."""
        _check_frames(frames, str(self.path))
        if frames.shape[1:3] != (self.height, self.width):
            raise ValueError(
                f"{self.path}: frame size {frames.shape[2]}x{frames.shape[1]} differs from the video's "
                f"{self.width}x{self.height}"
            )
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                format=self._pix_fmt
            )
            frame.pts = self.num_frames
            frame.time_base = self._time_base
            self._mux(self._stream.encode(frame))
            self.num_frames += 1

    def _mux(self, packets: Sequence[av.Packet]) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            self._container.mux(packet)

    def close(self) -> Path:
        """Flush the encoder, fsync, and move the file to its final name."""
        if self._closed:
            return self.path
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        self._mux(self._stream.encode(None))
        self._container.close()
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.encode(None)  # drain the encoder so it shuts down cleanly; packets are discarded
            self._container.close()
        except (av.FFmpegError, OSError, ValueError):
            pass  # the container may be unusable; the temp file is removed below regardless
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def encode_video(
    frames: np.ndarray,
    path: str | Path,
    fps: int,
    codec: str = DEFAULT_CODEC,
    pix_fmt: str = "yuv420p",
    gop: int = 2,
    crf: int | None = None,
) -> Path:
    """Write RGB ``uint8`` frames ``(t, h, w, 3)`` to ``path`` atomically (temp name, fsync, rename)."""
    _check_frames(frames, str(path))
    if len(frames) == 0:
        raise ValueError(f"{path}: no frames to encode")
    encoding = VideoEncoding(codec=codec, pix_fmt=pix_fmt, gop=gop, crf=crf)
    with VideoEncoder(path, fps, frames.shape[2], frames.shape[1], encoding) as encoder:
        encoder.write(frames)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` for decoding; any FFmpeg/OS failure becomes a :class:`VideoDecodeError` naming it."""
    if not path.is_file():
        raise VideoDecodeError(f"video file {path} does not exist")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"video file {path} is empty (0 bytes)")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(
            f"cannot open video file {path}: {exc} (corrupt, truncated or not a video)"
        ) from exc
    try:
        if not container.streams.video:
            raise VideoDecodeError(f"{path} has no video stream")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _iter_frames(path: Path, start_s: float | None) -> Iterator[tuple[float, av.VideoFrame]]:
    """Yield ``(timestamp_s, frame)`` in presentation order from the keyframe at or before ``start_s``."""
    with _open_video(path) as (container, stream):
        stream.codec_context.thread_count = DECODE_THREADS
        time_base = stream.time_base
        try:
            if start_s is not None and start_s > 0:
                container.seek(int(start_s / time_base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise VideoDecodeError(f"{path}: decoded a frame without a timestamp")
                yield float(frame.pts * time_base), frame
        except (av.FFmpegError, OSError, EOFError) as exc:
            raise VideoDecodeError(f"{path}: decoding failed: {exc} (corrupt or truncated video)") from exc


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def probe_video(path: str | Path) -> VideoInfo:
    """Read width, height, fps, codec and frame count from the header of ``path``."""
    path = Path(path)
    with _open_video(path) as (_, stream):
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=path,
            width=ctx.width,
            height=ctx.height,
            fps=float(rate) if rate else 0.0,
            codec=ctx.codec.canonical_name,
            pix_fmt=ctx.pix_fmt or "",
            num_frames=int(stream.frames or 0),
        )


def decode_segment(
    path: str | Path, start_s: float | None = None, end_s: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the frames whose timestamp lies in ``[start_s, end_s)`` (``None`` = open end).

    Returns ``(frames, timestamps)``: RGB ``uint8 (n, h, w, 3)`` and ``float64 (n,)`` seconds. Decoding the
    whole file checks the frame count against the header, so a file cut short is reported, not half-read.
    """
    path = Path(path)
    frames, stamps = [], []
    for ts, frame in _iter_frames(path, start_s):
        if end_s is not None and ts >= end_s:
            break
        if start_s is not None and ts < start_s:
            continue
        frames.append(_to_rgb(frame))
        stamps.append(ts)
    if not frames:
        span = f"[{start_s}, {end_s})" if start_s is not None or end_s is not None else "the file"
        raise VideoDecodeError(f"{path}: no frames decoded in {span}")
    if start_s is None and end_s is None:
        expected = probe_video(path).num_frames
        if expected and len(frames) < expected:
            raise VideoDecodeError(f"{path}: truncated, decoded {len(frames)} of {expected} frames")
    return np.stack(frames), np.asarray(stamps, dtype=np.float64)


def read_video(path: str | Path) -> np.ndarray:
    """All frames of ``path`` as RGB ``uint8 (t, h, w, 3)``."""
    return decode_segment(path)[0]


def decode_frame_range(path: str | Path, start: int, stop: int) -> np.ndarray:
    """Frames ``start..stop-1`` (by index at the stream's constant frame rate) as RGB ``uint8``."""
    if not 0 <= start < stop:
        raise ValueError(f"{path}: invalid frame range [{start}, {stop})")
    fps = probe_video(path).fps
    if fps <= 0:
        raise VideoDecodeError(f"{path}: frame rate unknown, cannot index frames")
    half = 0.5 / fps
    frames, _ = decode_segment(path, start / fps - half, stop / fps - half)
    if len(frames) != stop - start:
        raise VideoDecodeError(f"{path}: asked for frames [{start}, {stop}), decoded {len(frames)}")
    return frames


def _match_timestamps(
    path: Path, query_s: np.ndarray, loaded_s: np.ndarray, tolerance_s: float
) -> np.ndarray:
    """Index of the loaded frame nearest to each query; error if any is farther than ``tolerance_s``."""
    if len(loaded_s) == 0:
        raise VideoDecodeError(f"{path}: no frames decoded near timestamps {query_s.tolist()}")
    right = np.clip(np.searchsorted(loaded_s, query_s), 1, len(loaded_s) - 1) if len(loaded_s) > 1 else None
    if right is None:
        nearest = np.zeros(len(query_s), dtype=np.int64)
    else:
        left = right - 1
        nearest = np.where(np.abs(loaded_s[left] - query_s) <= np.abs(loaded_s[right] - query_s), left, right)
    gap = np.abs(loaded_s[nearest] - query_s)
    bad = gap > tolerance_s
    if bad.any():
        raise VideoDecodeError(
            f"{path}: no frame within tolerance_s={tolerance_s} of timestamps {query_s[bad].tolist()} "
            f"(nearest decoded: {loaded_s[nearest[bad]].tolist()}); the video may be truncated or out of sync"
        )
    return nearest


def decode_frames_at(path: str | Path, timestamps: Sequence[float], tolerance_s: float = 1e-4) -> np.ndarray:
    """Frames nearest to each timestamp (seconds), as RGB ``uint8 (n, h, w, 3)``.

    Like LeRobot's PyAV path: seek to the keyframe before the first timestamp, decode up to the last one, pick
    the nearest frame per query, and refuse a match farther than ``tolerance_s``.
    """
    path = Path(path)
    query = np.asarray(timestamps, dtype=np.float64)
    if query.ndim != 1 or len(query) == 0:
        raise ValueError(f"{path}: timestamps must be a non-empty 1-D sequence")
    first, last = float(query.min()), float(query.max())
    loaded_s, loaded = [], []
    for ts, frame in _iter_frames(path, first - tolerance_s):
        if ts < first - tolerance_s:
            continue
        loaded_s.append(ts)
        loaded.append(frame)
        if ts >= last:
            break
    nearest = _match_timestamps(path, query, np.asarray(loaded_s), tolerance_s)
    rgb = {i: _to_rgb(loaded[i]) for i in np.unique(nearest).tolist()}
    return np.stack([rgb[i] for i in nearest.tolist()])


# ----------------------------------------------------------------------------------------------------------
# Decode cache
# ----------------------------------------------------------------------------------------------------------


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file handle keeps np.save from appending ".npy" to the temp name
        np.save(handle, array)


@dataclass(frozen=True)
class DecodeCacheStats:
    """Counters for benchmarking a :class:`DecodeCache`."""

    hits: int
    misses: int
    entries: int
    bytes: int


class DecodeCache:
    """LRU cache of decoded video segments (one per episode and camera), bounded by bytes.

    Decoding a segment once and slicing frames out of RAM turns random access from "seek + decode a GOP per
    frame" into an array lookup. With ``disk_dir`` set, decoded segments are also stored there as ``.npy``
    files and memory-mapped, so they survive across epochs, processes and DataLoader workers.
    """

    def __init__(self, max_bytes: int = 1 << 30, disk_dir: str | Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self._entries: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    def segment(
        self, path: str | Path, start_s: float | None, end_s: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``decode_segment(path, start_s, end_s)``, served from the cache when possible."""
        key = (str(path), start_s, end_s)
        entry = self._entries.get(key)
        if entry is not None:
            self._hits += 1
            self._entries.move_to_end(key)
            return entry
        self._misses += 1
        path = Path(path)
        entry = self._load_from_disk(path, start_s, end_s) if self.disk_dir is not None else None
        if entry is None:
            entry = decode_segment(path, start_s, end_s)
            if self.disk_dir is not None:
                entry = self._save_to_disk(path, start_s, end_s, entry)
        self._insert(key, entry)
        return entry

    def frames_at(
        self,
        path: str | Path,
        start_s: float | None,
        end_s: float | None,
        timestamps: np.ndarray,
        tolerance_s: float = 1e-4,
    ) -> np.ndarray:
        """Frames of the cached segment ``[start_s, end_s)`` nearest to each file timestamp (checked)."""
        frames, loaded_s = self.segment(path, start_s, end_s)
        nearest = _match_timestamps(
            Path(path), np.asarray(timestamps, dtype=np.float64), loaded_s, tolerance_s
        )
        return np.asarray(frames[nearest])

    def _insert(self, key: tuple, entry: tuple[np.ndarray, np.ndarray]) -> None:
        size = entry[0].nbytes + entry[1].nbytes
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, (frames, stamps) = self._entries.popitem(last=False)
            self._bytes -= frames.nbytes + stamps.nbytes

    def _disk_paths(self, path: Path, start_s: float | None, end_s: float | None) -> tuple[Path, Path]:
        """Cache file names; the source's size and mtime are part of the key, so edited videos miss."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise VideoDecodeError(f"video file {path} does not exist") from exc
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, start_s, end_s)
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:20]
        assert self.disk_dir is not None
        return self.disk_dir / f"{digest}.frames.npy", self.disk_dir / f"{digest}.ts.npy"

    def _load_from_disk(
        self, path: Path, start_s: float | None, end_s: float | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        frames_path, ts_path = self._disk_paths(path, start_s, end_s)
        if not (frames_path.is_file() and ts_path.is_file()):
            return None
        try:
            return np.load(frames_path, mmap_mode="r"), np.load(ts_path)
        except (OSError, ValueError):
            return None  # a damaged cache file is just a miss; it is rewritten by the caller

    def _save_to_disk(
        self, path: Path, start_s: float | None, end_s: float | None, entry: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        frames_path, ts_path = self._disk_paths(path, start_s, end_s)
        atomic_write(ts_path, lambda tmp: _save_npy(tmp, entry[1]))
        atomic_write(frames_path, lambda tmp: _save_npy(tmp, entry[0]))
        return np.load(frames_path, mmap_mode="r"), entry[1]

    def clear(self) -> None:
        """Forget every in-memory entry (disk files stay)."""
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> DecodeCacheStats:
        return DecodeCacheStats(self._hits, self._misses, len(self._entries), self._bytes)
