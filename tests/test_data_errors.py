"""Broken inputs give errors that name the file or feature at fault, never a bare pyarrow/FFmpeg traceback."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlajepa.constants import ACTION, OBS_STATE, image_key
from vlajepa.data.errors import DatasetError, DatasetFormatError, MissingDatasetFileError, VideoDecodeError
from vlajepa.data.lerobot import LeRobotDataset, LeRobotDatasetMetadata
from vlajepa.data.lerobot_writer import LeRobotDatasetWriter
from vlajepa.data.video_io import decode_frames_at, encode_video, read_video
from vlajepa.data.videos import VideoSet, VideoSetWriter

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lerobot_v3_small"
FRONT = image_key("front")
VIDEO = Path("videos") / FRONT / "chunk-000" / "file-000.mp4"
DATA = Path("data") / "chunk-000" / "file-000.parquet"
EPISODES = Path("meta") / "episodes" / "chunk-000" / "file-000.parquet"
FEATURES = {
    FRONT: {"dtype": "video", "shape": [16, 16, 3]},
    OBS_STATE: {"dtype": "float32", "shape": [4]},
    ACTION: {"dtype": "float32", "shape": [4]},
}

needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "meta" / "info.json").is_file(), reason=f"LeRobot fixture not found at {FIXTURE}"
)


def names(path: Path) -> str:
    """Regex matching the path literally inside an error message."""
    return re.escape(str(path))


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A private copy of the LeRobot fixture that tests may damage."""
    root = tmp_path / "dataset"
    shutil.copytree(FIXTURE, root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared fixture is read-only
    return root


def episode(length: int = 3) -> dict[str, np.ndarray]:
    return {
        FRONT: np.zeros((length, 16, 16, 3), dtype=np.uint8),
        OBS_STATE: np.zeros((length, 4), dtype=np.float32),
        ACTION: np.zeros((length, 4), dtype=np.float32),
    }


# -- videos ----------------------------------------------------------------------------------------------


def test_garbage_bytes_are_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=names(path)):
        read_video(path)
    with pytest.raises(VideoDecodeError, match=names(path)):
        decode_frames_at(path, [0.0])


@needs_fixture
def test_truncated_video(tmp_path: Path) -> None:
    data = (FIXTURE / VIDEO).read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=names(path)):
        read_video(path)


def test_empty_missing_and_non_video_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("index,text\n0,hello\n")
    for path in (empty, text, tmp_path / "absent.mp4"):
        with pytest.raises(VideoDecodeError, match=names(path)):
            read_video(path)
    assert issubclass(VideoDecodeError, ValueError)


def test_frame_outside_the_video_is_reported(tmp_path: Path) -> None:
    path = encode_video(
        np.zeros((4, 16, 16, 3), dtype=np.uint8), tmp_path / "short.mp4", fps=10, codec="libx264"
    )
    with pytest.raises(VideoDecodeError, match=names(path)):
        decode_frames_at(path, [2.0])


@needs_fixture
@pytest.mark.parametrize("decode_cache", [True, False], ids=["cached", "uncached"])
def test_dataset_with_a_truncated_video(fixture_copy: Path, decode_cache: bool) -> None:
    video = fixture_copy / VIDEO
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    dataset = LeRobotDataset(fixture_copy, decode_cache=decode_cache)
    with pytest.raises(VideoDecodeError, match=names(video)):
        dataset[40]


# -- LeRobot metadata and tables -------------------------------------------------------------------------


@needs_fixture
def test_missing_info_json(fixture_copy: Path) -> None:
    info = fixture_copy / "meta" / "info.json"
    info.unlink()
    with pytest.raises(MissingDatasetFileError, match=names(info)) as error:
        LeRobotDatasetMetadata(fixture_copy)
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, DatasetError)


@needs_fixture
def test_missing_data_column(fixture_copy: Path) -> None:
    path = fixture_copy / DATA
    pq.write_table(pq.read_table(path).drop_columns([ACTION]), path)
    with pytest.raises(DatasetFormatError, match=names(path)) as error:
        LeRobotDataset(fixture_copy)
    assert ACTION in str(error.value)


@needs_fixture
def test_missing_episode_column(fixture_copy: Path) -> None:
    path = fixture_copy / EPISODES
    pq.write_table(pq.read_table(path).drop_columns(["dataset_from_index"]), path)
    with pytest.raises(DatasetFormatError, match=names(path)) as error:
        LeRobotDatasetMetadata(fixture_copy)
    assert "dataset_from_index" in str(error.value)


@needs_fixture
def test_unsupported_version(fixture_copy: Path) -> None:
    info = fixture_copy / "meta" / "info.json"
    info.write_text(info.read_text().replace('"v3.0"', '"v2.1"'))
    with pytest.raises(DatasetFormatError, match="v2.1"):
        LeRobotDatasetMetadata(fixture_copy)


# -- writer validation -----------------------------------------------------------------------------------


@pytest.fixture
def writer(tmp_path: Path):
    writer = LeRobotDatasetWriter(tmp_path / "out", 10, FEATURES, codec="libx264")
    yield writer
    writer.abort()


def test_wrong_shape_names_feature_and_shapes(writer: LeRobotDatasetWriter) -> None:
    bad = episode() | {OBS_STATE: np.zeros((3, 5), dtype=np.float32)}
    with pytest.raises(ValueError, match=re.escape(OBS_STATE)) as error:
        writer.add_episode(bad, task="t")
    assert "(3, 4)" in str(error.value) and "(3, 5)" in str(error.value)

    bad = episode() | {FRONT: np.zeros((3, 16, 8, 3), dtype=np.uint8)}
    with pytest.raises(ValueError, match=re.escape(FRONT)):
        writer.add_episode(bad, task="t")


def test_nan_missing_key_and_mismatched_lengths(writer: LeRobotDatasetWriter) -> None:
    bad = episode()
    bad[ACTION][1, 2] = np.nan
    with pytest.raises(ValueError, match=rf"{re.escape(ACTION)}.*NaN.*\[1\]"):
        writer.add_episode(bad, task="t")
    with pytest.raises(ValueError, match=re.escape(ACTION)):
        writer.add_episode({k: v for k, v in episode().items() if k != ACTION}, task="t")
    with pytest.raises(ValueError, match="same number of frames"):
        writer.add_episode(episode() | {ACTION: np.zeros((2, 4), dtype=np.float32)}, task="t")
    with pytest.raises(ValueError, match="uint8"):
        writer.add_episode(episode() | {FRONT: np.zeros((3, 16, 16, 3), dtype=np.float32)}, task="t")
    assert writer.num_episodes == 0  # nothing half-written
    writer.add_episode(episode(), task="t")
    assert writer.num_episodes == 1


# -- video sets ------------------------------------------------------------------------------------------


def make_video_set(root: Path) -> None:
    with VideoSetWriter(root, fps=10, codec="libx264") as writer:
        writer.add_video(np.zeros((3, 16, 16, 3), dtype=np.uint8), "wave")


@pytest.mark.parametrize("header", ["id,caption", "text,task", "index"])
def test_video_set_captions_header_is_checked(tmp_path: Path, header: str) -> None:
    root = tmp_path / "videos"
    make_video_set(root)
    captions = root / "captions.csv"
    captions.write_text(f"{header}\n000000,wave\n")
    with pytest.raises(DatasetFormatError, match=names(captions)):
        VideoSet(root)


def test_video_set_without_meta_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    make_video_set(root)
    (root / "meta.json").unlink()
    with pytest.raises(MissingDatasetFileError, match=names(root / "meta.json")):
        VideoSet(root)
