"""The reader against a dataset written by LeRobot 0.4.4 itself and what LeRobot's own reader returned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlajepa.constants import ACTION, OBS_STATE, PAD_SUFFIX, TASK, image_key
from vlajepa.data.lerobot import LeRobotDataset, LeRobotDatasetMetadata

# The repository is cloned with `shared/` beside it: <repo>/../shared/fixtures.
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
ROOT = FIXTURES / "lerobot_v3_small"
FRONT = image_key("front")
DELTAS = {ACTION: [i / 10 for i in range(8)], OBS_STATE: [-0.2, -0.1, 0.0]}

pytestmark = pytest.mark.skipif(
    not (ROOT / "meta" / "info.json").is_file(), reason=f"LeRobot fixture not found at {ROOT}"
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "lerobot_v3_small_lerobot_reference.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "lerobot_v3_small_expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def dataset() -> LeRobotDataset:
    return LeRobotDataset(ROOT, delta_timestamps=DELTAS)


def psnr(decoded: torch.Tensor, original: np.ndarray) -> float:
    """PSNR of a float CHW [0, 1] image against the uint8 HWC original."""
    image = decoded.permute(1, 2, 0).numpy().astype(np.float64) * 255.0
    mse = np.mean((image - original.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_metadata() -> None:
    meta = LeRobotDatasetMetadata(ROOT)
    assert meta.fps == 10
    assert meta.camera_keys == [FRONT]
    assert (meta.total_episodes, meta.total_frames) == (3, 72)
    assert meta.tasks == ["push the red block to the goal", "open the drawer"]
    assert meta.episodes["length"].tolist() == [24, 18, 30]
    assert meta.episodes[1][f"videos/{FRONT}/from_timestamp"] == pytest.approx(2.4)
    assert meta.stats[ACTION]["mean"].shape == (4,)
    assert meta.stats[FRONT]["mean"].shape == (3, 1, 1)


def test_every_index_matches_lerobot(dataset: LeRobotDataset, reference: dict[str, np.ndarray]) -> None:
    assert len(dataset) == len(reference["index"]) == 72
    for i in range(len(dataset)):
        item = dataset[i]
        assert np.array_equal(item[ACTION].numpy(), reference["action"][i]), i
        assert np.array_equal(item[ACTION + PAD_SUFFIX].numpy(), reference["action_is_pad"][i]), i
        assert np.array_equal(item[OBS_STATE].numpy(), reference["state"][i]), i
        assert np.array_equal(item[OBS_STATE + PAD_SUFFIX].numpy(), reference["state_is_pad"][i]), i
        assert item[TASK] == reference["task"][i]
        assert item["episode_index"].item() == reference["episode_index"][i]
        assert item["frame_index"].item() == reference["frame_index"][i]
        assert item["index"].item() == reference["index"][i]
        assert item[ACTION].dtype == torch.float32 and item[ACTION + PAD_SUFFIX].dtype == torch.bool


@pytest.mark.parametrize("decode_cache", [True, False], ids=["cached", "uncached"])
def test_every_frame_decodes_close_to_original(decode_cache: bool, expected: dict[str, np.ndarray]) -> None:
    dataset = LeRobotDataset(ROOT, decode_cache=decode_cache)
    for i in range(len(dataset)):
        image = dataset[i][FRONT]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert psnr(image, expected["frames_front"][i]) > 30.0, i


def test_episode_subset_keeps_absolute_indices(reference: dict[str, np.ndarray]) -> None:
    subset = LeRobotDataset(ROOT, episodes=[1], delta_timestamps=DELTAS)
    assert len(subset) == 18 and subset.num_episodes == 1
    for i in range(len(subset)):
        item, ref = subset[i], 24 + i
        assert item["index"].item() == ref
        assert np.array_equal(item[ACTION].numpy(), reference["action"][ref])
        assert np.array_equal(item[ACTION + PAD_SUFFIX].numpy(), reference["action_is_pad"][ref])
        assert np.array_equal(item[OBS_STATE + PAD_SUFFIX].numpy(), reference["state_is_pad"][ref])


def test_video_history_is_clamped_and_padded(expected: dict[str, np.ndarray]) -> None:
    dataset = LeRobotDataset(ROOT, delta_timestamps={FRONT: [-0.1, 0.0]})
    first = dataset[24]  # first frame of episode 1: the previous frame belongs to episode 0
    assert first[FRONT].shape == (2, 3, 64, 64)
    assert first[FRONT + PAD_SUFFIX].tolist() == [True, False]
    assert torch.equal(first[FRONT][0], first[FRONT][1])
    later = dataset[30]
    assert later[FRONT + PAD_SUFFIX].tolist() == [False, False]
    assert psnr(later[FRONT][0], expected["frames_front"][29]) > 30.0


def test_delta_timestamps_off_the_frame_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="1/10"):
        LeRobotDataset(ROOT, delta_timestamps={ACTION: [0.0, 0.05]})
