"""Write LeRobot v3 datasets with the project's writer and read them back with the project's reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlajepa.constants import ACTION, OBS_STATE, PAD_SUFFIX, TASK, image_key
from vlajepa.data.errors import MissingDatasetFileError
from vlajepa.data.lerobot import LeRobotDataset, LeRobotDatasetMetadata
from vlajepa.data.lerobot_writer import LeRobotDatasetWriter
from vlajepa.data.staging import partial_root

FPS = 10
SIZE = 32
FRONT = image_key("front")
FEATURES = {
    FRONT: {"dtype": "video", "shape": [SIZE, SIZE, 3]},
    OBS_STATE: {"dtype": "float32", "shape": [4]},
    ACTION: {"dtype": "float32", "shape": [4]},
}
LENGTHS = (12, 7, 15)
TASKS = ("push the block", "open the drawer", "push the block")


def smooth_frames(length: int, seed: int) -> np.ndarray:
    """Moving colour gradients: compressible like rendered scenes, different in every channel."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    t = np.arange(length)[:, None, None]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    channels = [
        128 + 90 * np.sin(xx / 7.0 + t / 4.0 + phase[0]),
        128 + 90 * np.cos(yy / 9.0 - t / 5.0 + phase[1]),
        128 + 60 * np.sin((xx + yy) / 11.0 + phase[2]) + 0 * t,
    ]
    return np.stack(channels, axis=-1).round().clip(0, 255).astype(np.uint8)


def make_episode(length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FRONT: smooth_frames(length, seed),
        OBS_STATE: np.cumsum(rng.normal(size=(length, 4)), axis=0).astype(np.float32),
        ACTION: rng.uniform(-1, 1, size=(length, 4)).astype(np.float32),
    }


def psnr(decoded: torch.Tensor, original: np.ndarray) -> float:
    image = decoded.permute(1, 2, 0).numpy().astype(np.float64) * 255.0
    mse = np.mean((image - original.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def write_dataset(root: Path, **writer_kwargs) -> list[dict[str, np.ndarray]]:
    episodes = [make_episode(n, seed) for seed, n in enumerate(LENGTHS)]
    writer = LeRobotDatasetWriter(root, FPS, FEATURES, robot_type="sim", **writer_kwargs)
    for episode, task in zip(episodes, TASKS, strict=True):
        writer.add_episode(episode, task=task)
    assert not root.exists(), "the dataset must not appear before finalize()"
    assert writer.finalize() == root
    assert not partial_root(root).exists()
    return episodes


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    root = tmp_path_factory.mktemp("roundtrip") / "dataset"
    return root, write_dataset(root)


def test_values_and_indices_survive_the_round_trip(written) -> None:
    root, episodes = written
    dataset = LeRobotDataset(root)
    assert len(dataset) == sum(LENGTHS)
    i = 0
    for ep, (episode, task) in enumerate(zip(episodes, TASKS, strict=True)):
        for frame in range(len(episode[ACTION])):
            item = dataset[i]
            assert item["index"].item() == i
            assert item["episode_index"].item() == ep
            assert item["frame_index"].item() == frame
            assert item["timestamp"].item() == np.float32(frame / FPS)
            assert torch.equal(item[OBS_STATE], torch.from_numpy(episode[OBS_STATE][frame]))
            assert torch.equal(item[ACTION], torch.from_numpy(episode[ACTION][frame]))
            assert item[TASK] == task
            assert item[FRONT].shape == (3, SIZE, SIZE)
            assert psnr(item[FRONT], episode[FRONT][frame]) > 30.0, (ep, frame)
            i += 1


def test_info_and_stats_are_sane(written) -> None:
    root, episodes = written
    meta = LeRobotDatasetMetadata(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["splits"] == {"train": "0:3"}
    assert info["robot_type"] == "sim"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in info["features"]
    assert info["features"][FRONT]["info"]["video.codec"] == "av1"
    assert meta.tasks == ["push the block", "open the drawer"]
    assert meta.episodes["length"].tolist() == list(LENGTHS)
    assert meta.episodes["dataset_from_index"].tolist() == [0, 12, 19]
    assert meta.episodes[2][f"videos/{FRONT}/from_timestamp"] == pytest.approx(1.9)

    state = np.concatenate([e[OBS_STATE] for e in episodes])
    assert np.allclose(meta.stats[OBS_STATE]["mean"], state.mean(0), atol=1e-5)
    assert np.allclose(meta.stats[OBS_STATE]["std"], state.std(0), atol=1e-5)
    assert np.allclose(meta.stats[OBS_STATE]["q99"], np.quantile(state, 0.99, axis=0), atol=1e-5)
    assert meta.stats[OBS_STATE]["count"].tolist() == [sum(LENGTHS)]
    pixels = np.concatenate([e[FRONT] for e in episodes]).reshape(-1, 3) / 255.0
    image = meta.stats[FRONT]
    assert image["mean"].shape == (3, 1, 1)
    assert np.allclose(image["mean"].ravel(), pixels.mean(0)) and np.allclose(
        image["std"].ravel(), pixels.std(0)
    )
    assert np.allclose(image["q01"].ravel(), np.quantile(pixels, 0.01, axis=0))
    assert (image["min"] <= image["mean"]).all() and (image["mean"] <= image["max"]).all()
    episode_stats = meta.episodes[1][f"stats/{ACTION}/max"]
    assert np.allclose(episode_stats, episodes[1][ACTION].max(0))


def test_delta_pads_at_episode_edges(written) -> None:
    root, episodes = written
    deltas = {ACTION: [0.0, 0.1, 0.2, 0.3], OBS_STATE: [-0.2, -0.1, 0.0], FRONT: [-0.1, 0.0]}
    dataset = LeRobotDataset(root, delta_timestamps=deltas)
    last_of_first = dataset[11]  # last frame of episode 0: the future is clamped, not taken from episode 1
    assert last_of_first[ACTION + PAD_SUFFIX].tolist() == [False, True, True, True]
    assert torch.equal(last_of_first[ACTION], torch.from_numpy(episodes[0][ACTION][[11, 11, 11, 11]]))
    first_of_second = dataset[12]
    assert first_of_second[OBS_STATE + PAD_SUFFIX].tolist() == [True, True, False]
    assert torch.equal(first_of_second[OBS_STATE], torch.from_numpy(episodes[1][OBS_STATE][[0, 0, 0]]))
    assert first_of_second[FRONT + PAD_SUFFIX].tolist() == [True, False]
    assert first_of_second[FRONT].shape == (2, 3, SIZE, SIZE)
    middle = dataset[14]
    assert not middle[ACTION + PAD_SUFFIX].any() and not middle[OBS_STATE + PAD_SUFFIX].any()
    assert torch.equal(middle[ACTION], torch.from_numpy(episodes[1][ACTION][2:6]))


def test_many_small_files_and_chunks_read_back(tmp_path: Path) -> None:
    """Size limits of 0 MB start a new parquet and mp4 file per episode, and chunks of 2 files each."""
    root = tmp_path / "split"
    episodes = write_dataset(
        root, codec="libx264", chunks_size=2, data_files_size_in_mb=0, video_files_size_in_mb=0
    )
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("data/*/*.parquet")) == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
    ]
    meta = LeRobotDatasetMetadata(root)
    assert meta.episodes[2][f"videos/{FRONT}/chunk_index"] == 1
    assert meta.features[FRONT]["info"]["video.codec"] == "h264"
    dataset = LeRobotDataset(root, episodes=[2, 0])
    assert len(dataset) == LENGTHS[0] + LENGTHS[2]
    item = dataset[LENGTHS[0] + 3]  # selected frames keep dataset order: episode 0, then episode 2
    assert item["episode_index"].item() == 2 and item["frame_index"].item() == 3
    assert torch.equal(item[ACTION], torch.from_numpy(episodes[2][ACTION][3]))
    assert psnr(item[FRONT], episodes[2][FRONT][3]) > 30.0


def test_interrupted_writer_leaves_no_dataset(tmp_path: Path) -> None:
    root = tmp_path / "interrupted"
    writer = LeRobotDatasetWriter(root, FPS, FEATURES, codec="libx264")  # x264: no SVT teardown warning
    writer.add_episode(make_episode(5, 0), task="push the block")
    # No finalize(): the process "dies" here.
    assert not root.exists()
    for folder in (root, partial_root(root)):
        with pytest.raises(MissingDatasetFileError, match=str(folder / "meta" / "info.json")) as error:
            LeRobotDataset(folder)
        assert isinstance(error.value, FileNotFoundError)

    # A new run over the same root discards the stale partial folder and succeeds.
    write_dataset(root)
    assert len(LeRobotDataset(root)) == sum(LENGTHS)


def test_writer_aborts_on_exception_and_refuses_existing_root(tmp_path: Path) -> None:
    root = tmp_path / "aborted"
    with pytest.raises(RuntimeError, match="boom"), LeRobotDatasetWriter(root, FPS, FEATURES) as writer:
        writer.add_episode(make_episode(4, 1), task="push the block")
        raise RuntimeError("boom")
    assert not root.exists() and not partial_root(root).exists()

    root.mkdir()
    with pytest.raises(FileExistsError, match=str(root)):
        LeRobotDatasetWriter(root, FPS, FEATURES)


def test_scalar_and_boolean_features_without_video(tmp_path: Path) -> None:
    """Shape [1] features are scalar columns (as LeRobot stores them); datasets may have no camera at all."""
    root = tmp_path / "no_video"
    features = {
        OBS_STATE: {"dtype": "float32", "shape": [2]},
        "next.reward": {"dtype": "float32", "shape": [1]},
        "next.done": {"dtype": "bool", "shape": [1]},
    }
    with LeRobotDatasetWriter(root, FPS, features) as writer:
        for length in (3, 4):
            done = np.zeros(length, dtype=bool)
            done[-1] = True
            reward = np.linspace(0, 1, length)  # float64 input is stored as float32
            frames = {OBS_STATE: np.ones((length, 2)), "next.reward": reward, "next.done": done}
            writer.add_episode(frames, task="t")
    meta = LeRobotDatasetMetadata(root)
    assert meta.camera_keys == [] and meta.video_path is None
    dataset = LeRobotDataset(root, delta_timestamps={"next.reward": [0.0, 0.1]})
    item = dataset[2]
    assert item["next.done"].dtype == torch.bool and item["next.done"].item() is True
    assert item["next.reward"].tolist() == [1.0, 1.0] and item["next.reward_is_pad"].tolist() == [False, True]
    assert dataset[3][OBS_STATE].dtype == torch.float32


def test_episode_metadata_columns(tmp_path: Path) -> None:
    """Extra per-episode columns (e.g. a rollout's success) land in the episode table; they must be scalars, the
    same names for every episode, and never overwrite the table's own columns."""
    root = tmp_path / "metadata"
    features = {OBS_STATE: {"dtype": "float32", "shape": [2]}}
    with LeRobotDatasetWriter(root, FPS, features) as writer:
        for index, success in enumerate((True, False)):
            writer.add_episode({OBS_STATE: np.ones((3, 2))}, task="t", metadata={"success": success, "seed": index})
        with pytest.raises(ValueError, match="differs from the first episode"):
            writer.add_episode({OBS_STATE: np.ones((3, 2))}, task="t", metadata={"success": True})
        with pytest.raises(ValueError, match="overwrite"):
            writer.add_episode({OBS_STATE: np.ones((3, 2))}, task="t", metadata={"length": 1, "seed": 0})
        with pytest.raises(ValueError, match="scalar"):
            writer.add_episode({OBS_STATE: np.ones((3, 2))}, task="t", metadata={"success": [1], "seed": 0})
    episodes = LeRobotDatasetMetadata(root).episodes
    assert episodes["success"] == [True, False] and episodes["seed"].tolist() == [0, 1]
    assert len(LeRobotDataset(root)) == 6  # the refused episodes were not added
