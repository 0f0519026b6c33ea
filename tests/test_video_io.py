"""Video encoding/decoding helpers and the action-free video set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlajepa.data.video_io import (
    DecodeCache,
    VideoEncoder,
    decode_frame_range,
    decode_frames_at,
    decode_segment,
    encode_video,
    probe_video,
    read_video,
    video_quality,
)
from vlajepa.data.videos import VideoSet, VideoSetWriter

FPS = 10


def gradient_clip(length: int, height: int = 32, width: int = 48) -> np.ndarray:
    t = np.arange(length)[:, None, None]
    yy, xx = np.mgrid[0:height, 0:width]
    clip = np.stack(
        [128 + 90 * np.sin(xx / 8 + t / 3), 128 + 90 * np.cos(yy / 6 - t / 4), 100 + 0 * (xx + yy + t)],
        axis=-1,
    )
    return clip.round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_colours_stay_rgb(tmp_path: Path, codec: str) -> None:
    """A red frame decodes red: no BGR swap anywhere between encoder and decoder."""
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    frames[..., 0] = 220
    frames[..., 2] = 20
    decoded = read_video(encode_video(frames, tmp_path / "red.mp4", FPS, codec=codec))
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).max() <= 6


def test_timestamps_ranges_and_probe(tmp_path: Path) -> None:
    clip = gradient_clip(20)
    path = encode_video(clip, tmp_path / "clip.mp4", FPS)
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.num_frames, info.codec) == (48, 32, 10.0, 20, "av1")
    frames, stamps = decode_segment(path)
    assert np.allclose(stamps, np.arange(20) / FPS)
    assert psnr(frames, clip) > 30
    picked = decode_frames_at(path, [1.5, 0.2, 1.5])
    assert np.array_equal(picked, frames[[15, 2, 15]])
    assert np.array_equal(decode_frame_range(path, 5, 9), frames[5:9])
    assert np.array_equal(decode_segment(path, 0.95, 1.25)[0], frames[10:13])
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temp file left behind


def test_encoder_appends_episodes_back_to_back(tmp_path: Path) -> None:
    first, second = gradient_clip(6), gradient_clip(9)[::-1]
    with VideoEncoder(tmp_path / "shared.mp4", FPS, 48, 32) as encoder:
        encoder.write(first)
        assert encoder.num_frames == 6
        encoder.write(np.ascontiguousarray(second))
    frames, stamps = decode_segment(tmp_path / "shared.mp4", 0.55, None)  # second episode from t = 6 / fps
    assert len(frames) == 9 and stamps[0] == pytest.approx(0.6)
    assert psnr(frames, second) > 30


def test_decode_cache_serves_repeats_from_memory_and_disk(tmp_path: Path) -> None:
    path = encode_video(gradient_clip(12), tmp_path / "clip.mp4", FPS, codec="libx264")
    cache = DecodeCache(max_bytes=1 << 20, disk_dir=tmp_path / "cache")
    direct = decode_frames_at(path, [0.3, 0.9])
    assert np.array_equal(cache.frames_at(path, None, None, np.array([0.3, 0.9])), direct)
    assert np.array_equal(cache.frames_at(path, None, None, np.array([0.9])), direct[1:])
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)

    fresh = DecodeCache(disk_dir=tmp_path / "cache")  # e.g. another DataLoader worker
    assert np.array_equal(fresh.frames_at(path, None, None, np.array([0.3])), direct[:1])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2

    small = DecodeCache(max_bytes=1)
    small.segment(path, None, 0.55)
    small.segment(path, 0.55, None)
    assert small.stats().entries == 1  # least recently used segment evicted


def marker_clip(length: int = 6, size: int = 48) -> np.ndarray:
    """A brown table with a 1-pixel green marker that moves one pixel per frame: the scale of MT10's goal markers."""
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    frames[:] = (110, 75, 50)
    for t in range(length):
        frames[t, 20, 10 + t] = (30, 200, 40)
    return frames


def test_lossless_quality_keeps_one_pixel_markers(tmp_path: Path) -> None:
    """What evaluation shows the policy (raw renders) is what training reads back, up to colour-space rounding; the
    LeRobot default, for comparison, loses the marker's colour."""
    clip = marker_clip()
    lossless = video_quality("lossless")
    decoded = read_video(encode_video(clip, tmp_path / "lossless.mp4", FPS, codec=lossless.codec,
                                      pix_fmt=lossless.pix_fmt, crf=lossless.crf))
    assert np.abs(decoded.astype(int) - clip).max() <= 2
    lerobot = video_quality("lerobot")
    blurred = read_video(encode_video(clip, tmp_path / "lerobot.mp4", FPS, codec=lerobot.codec, crf=lerobot.crf))
    markers = [blurred[t, 20, 10 + t].astype(int) - clip[t, 20, 10 + t] for t in range(len(clip))]
    assert max(np.abs(m).max() for m in markers) > 30
    with pytest.raises(ValueError, match="unknown video quality"):
        video_quality("high")


def test_video_set_writer_stores_at_the_given_quality(tmp_path: Path) -> None:
    lossless = video_quality("lossless")
    with VideoSetWriter(tmp_path / "v", FPS, codec=lossless.codec, crf=lossless.crf,
                        pix_fmt=lossless.pix_fmt) as writer:
        writer.add_video(marker_clip(), "reach the goal")
    assert np.abs(VideoSet(tmp_path / "v").frames(0).astype(int) - marker_clip()).max() <= 2


def test_video_set_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "human_video"
    clips = [gradient_clip(5), gradient_clip(8)[::-1].copy()]
    writer = VideoSetWriter(root, FPS, provenance={"source": "test", "shift": "recoloured arm"})
    assert writer.add_video(clips[0], "open the drawer", task="drawer-open") == "000000"
    writer.add_video(clips[1], 'push the "red" block, slowly')
    assert not root.exists()
    writer.finalize()

    videos = VideoSet(root)
    assert len(videos) == 2 and videos.fps == FPS
    assert videos.captions == ["open the drawer", 'push the "red" block, slowly']
    assert videos.tasks == ["drawer-open", None]
    assert videos.meta["provenance"]["source"] == "test"
    assert (videos.meta["height"], videos.meta["width"]) == (32, 48)
    assert [videos.num_frames(i) for i in range(2)] == [5, 8]
    for i, clip in enumerate(clips):
        frames = videos.frames(i)
        assert frames.shape == clip.shape and frames.dtype == np.uint8
        assert psnr(frames, clip) > 30


def test_video_set_reads_columns_by_name(tmp_path: Path) -> None:
    root = tmp_path / "reordered"
    with VideoSetWriter(root, FPS, codec="libx264") as writer:
        writer.add_video(gradient_clip(3), "wave")
    (root / "captions.csv").write_text("text,task,index\nwave hello,greet,000000\n")
    videos = VideoSet(root)
    assert videos.captions == ["wave hello"] and videos.tasks == ["greet"] and videos.ids == ["000000"]


def test_video_set_writer_rejects_bad_clips(tmp_path: Path) -> None:
    writer = VideoSetWriter(tmp_path / "set", FPS, codec="libx264")
    with pytest.raises(ValueError, match="uint8"):
        writer.add_video(np.zeros((3, 16, 16, 3), dtype=np.float32), "x")
    writer.add_video(np.zeros((3, 16, 16, 3), dtype=np.uint8), "x")
    with pytest.raises(ValueError, match="one size"):
        writer.add_video(np.zeros((3, 32, 16, 3), dtype=np.uint8), "x")
    writer.abort()
    assert not (tmp_path / "set").exists() and not (tmp_path / "set.partial").exists()
