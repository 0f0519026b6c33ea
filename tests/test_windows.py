"""Training windows and the robot:video mixture: shapes, pad masks, no future frame for the student, RGB video,
deterministic and resumable sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.synthetic import write_robot_dataset, write_video_set
from helpers.models import tiny_config
from vlajepa.constants import (
    ACTION,
    ACTION_IS_PAD,
    FUTURE_FRAME_IDS,
    FUTURE_IS_PAD,
    OBS_IMAGES,
    OBS_STATE,
    TASK,
    future_image_key,
    image_key,
)
from vlajepa.data.errors import DatasetFormatError
from vlajepa.data.lerobot import LeRobotDataset
from vlajepa.data.videos import VideoSetWriter
from vlajepa.data.windows import (
    MixtureBatchSampler,
    MixtureLoader,
    RobotWindows,
    VideoWindows,
    source_schedule,
)

CAMERA = "corner2"
LENGTHS = (12, 9, 15)  # episode lengths of the robot fixture


@pytest.fixture(scope="module")
def config():
    return tiny_config()  # 32 px, T=3 frames, stride 2, H=4 actions


@pytest.fixture(scope="module")
def robot_root(tmp_path_factory):
    return write_robot_dataset(tmp_path_factory.mktemp("windows") / "robot", LENGTHS, size=32)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    return write_video_set(tmp_path_factory.mktemp("windows") / "video", (10, 7), size=48)  # resized to 32


@pytest.fixture(scope="module")
def robot(robot_root, config):
    return RobotWindows(robot_root, config)


# ---------------------------------------------------------------------------- robot windows


def test_robot_window_shapes_and_types(robot, config):
    assert len(robot) == sum(LENGTHS)
    item = robot[3]
    T, H = config.clip_length, config.chunk_size
    assert item[image_key(CAMERA)].shape == (3, 32, 32)
    assert item[future_image_key(CAMERA)].shape == (T, 3, 32, 32)
    assert item[FUTURE_IS_PAD].shape == (T,) and item[FUTURE_IS_PAD].dtype == torch.bool
    assert item[FUTURE_FRAME_IDS].tolist() == [3, 5, 7]
    assert item[OBS_STATE].shape == (config.state_dim,) and item[OBS_STATE].dtype == torch.float32
    assert item[ACTION].shape == (H, config.action_dim) and item[ACTION_IS_PAD].shape == (H,)
    assert isinstance(item[TASK], str)
    assert not item[FUTURE_IS_PAD].any() and not item[ACTION_IS_PAD].any()


def test_pad_masks_at_the_episode_end_repeat_the_last_frame_and_action(robot, robot_root):
    last = LENGTHS[0] - 1  # the last frame of episode 0
    item = robot[last]
    assert item[FUTURE_IS_PAD].tolist() == [False, True, True]
    assert item[ACTION_IS_PAD].tolist() == [False, True, True, True]
    assert item[FUTURE_FRAME_IDS].tolist() == [last, last, last]  # clamped inside the episode, never the next one
    clip = item[future_image_key(CAMERA)]
    assert torch.equal(clip[1], clip[0]) and torch.equal(clip[2], clip[0])  # padding repeats, the mask marks it
    assert torch.equal(item[ACTION][1:], item[ACTION][:1].expand(3, -1))

    near_end = robot[last - 2]
    assert near_end[FUTURE_IS_PAD].tolist() == [False, False, True]
    assert near_end[ACTION_IS_PAD].tolist() == [False, False, False, True]
    first_of_next = robot[LENGTHS[0]]  # episode 1 starts fresh
    assert not first_of_next[FUTURE_IS_PAD].any()
    assert first_of_next[FUTURE_FRAME_IDS].tolist() == [12, 14, 16]


def test_student_keys_hold_the_current_frame_only(robot, robot_root):
    item = robot[4]
    observation_keys = [k for k in item if k.startswith(OBS_IMAGES)]
    assert observation_keys == [image_key(CAMERA)]
    current = item[image_key(CAMERA)]
    assert current.ndim == 3  # one frame, no time axis
    plain = LeRobotDataset(robot_root)[4][image_key(CAMERA)]
    assert torch.equal(current, plain)  # frame t itself
    clip = item[future_image_key(CAMERA)]
    assert torch.equal(clip[0], current)
    assert not torch.equal(clip[1], current)  # the future differs and stays under future.*


def test_state_and_actions_are_normalized_with_the_saved_mode(robot, robot_root):
    assert robot.normalizer.features[ACTION].mode == "min_max"
    raw = LeRobotDataset(robot_root).column(ACTION)
    normalized = robot.normalizer.normalize(ACTION, raw)
    assert normalized.min() >= -1 - 1e-6 and normalized.max() <= 1 + 1e-6
    item = robot[0]
    assert torch.allclose(item[ACTION][0].double(), torch.from_numpy(normalized[0]).double(), atol=1e-6)
    quantile = RobotWindows(robot_root, robot.config, action_mode="quantile")
    assert quantile.normalizer.features[ACTION].mode == "quantile"


def test_without_future_images_only_ids_and_masks_are_given(robot_root, config, robot):
    light = RobotWindows(robot_root, config, future_images=False, with_actions=False)
    item = light[LENGTHS[0] - 1]
    assert future_image_key(CAMERA) not in item and ACTION not in item
    assert torch.equal(item[image_key(CAMERA)], robot[LENGTHS[0] - 1][image_key(CAMERA)])
    assert item[FUTURE_IS_PAD].tolist() == [False, True, True]


def test_mismatched_dataset_is_named(robot_root, config):
    with pytest.raises(DatasetFormatError, match="corner3"):
        RobotWindows(robot_root, config.replace(cameras=("corner3",)))
    with pytest.raises(DatasetFormatError, match="shape"):
        RobotWindows(robot_root, config.replace(action_dim=7))


# ---------------------------------------------------------------------------- video windows


def test_video_windows_are_resized_padded_and_captioned(video_root, config):
    videos = VideoWindows(video_root, config)
    assert len(videos) == 17
    item = videos[8]  # clip 0 (10 frames), frame 8: offsets 8, 10, 12
    assert item[image_key(CAMERA)].shape == (3, 32, 32)
    assert item[future_image_key(CAMERA)].shape == (3, 3, 32, 32)
    assert item[FUTURE_IS_PAD].tolist() == [False, True, True]
    assert item[FUTURE_FRAME_IDS].tolist() == [8, 9, 9]
    assert OBS_STATE not in item and ACTION not in item
    assert item[TASK] == videos.videos.captions[0]
    second = videos[10]  # first frame of clip 1
    assert second[FUTURE_FRAME_IDS].tolist() == [10, 12, 14]
    assert torch.equal(second[future_image_key(CAMERA)][0], second[image_key(CAMERA)])


def test_video_frames_come_back_rgb(tmp_path, config):
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    frames[..., 0] = 220  # pure red
    with VideoSetWriter(tmp_path / "red", fps=10, codec="libx264") as writer:
        writer.add_video(frames, "a red clip")
    image = VideoWindows(tmp_path / "red", config)[0][image_key(CAMERA)]
    red, green, blue = image.mean(dim=(1, 2)).tolist()
    assert red > 0.75 and green < 0.1 and blue < 0.1


def test_video_needs_a_single_camera_config(video_root, config):
    with pytest.raises(ValueError, match="one view"):
        VideoWindows(video_root, config.replace(cameras=("a", "b")))


# ---------------------------------------------------------------------------- mixture


def test_source_schedule_follows_the_ratio_deterministically():
    assert source_schedule([1, 1], 6) == [0, 1, 0, 1, 0, 1]
    order = source_schedule([3, 1], 400)
    assert order.count(0) == 300 and order[:8] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert source_schedule([1, 0], 5) == [0] * 5
    assert source_schedule([1, 1], 3, counts=[5, 4]) == [1, 0, 1]
    with pytest.raises(ValueError):
        source_schedule([0, 0], 1)


def test_sampler_covers_each_epoch_and_splits_global_batches_between_processes():
    sampler = MixtureBatchSampler([10, 7], [1, 1], [5, 7], seed=3)
    stream = iter(sampler)
    robot = [next(stream) for _ in range(4)]
    assert sorted(robot[0] + robot[2]) == list(range(10))  # one robot epoch = a permutation
    assert all(10 <= i < 17 for i in robot[1])  # video indices come after the robot ones
    ranks = [iter(MixtureBatchSampler([10, 12], [1, 1], [5, 3], seed=3, rank=r, world_size=2)) for r in (0, 1)]
    for _ in range(6):
        a, b = next(ranks[0]), next(ranks[1])
        assert not set(a) & set(b)  # each process its own slice
        assert (max(a) < 10) == (max(b) < 10)  # the same source everywhere


def test_mixture_loader_is_deterministic_and_resumes_exactly(robot, video_root, config):
    videos = VideoWindows(video_root, config)

    def loader():
        return MixtureLoader({"robot": robot, "video": videos}, {"robot": 2, "video": 1}, {"robot": 3, "video": 2}, 7)

    reference = loader()
    batches = [next(reference) for _ in range(7)]
    assert [name for name, _ in batches] == ["robot", "robot", "video", "robot", "robot", "video", "robot"]
    assert len(batches[0][1][TASK]) == 3 and len(batches[2][1][TASK]) == 2
    first = loader()
    for _ in range(4):
        next(first)
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    for (name, expected), (resumed_name, batch) in zip(batches[4:], [next(resumed) for _ in range(3)], strict=True):
        assert name == resumed_name
        assert torch.equal(expected[FUTURE_FRAME_IDS], batch[FUTURE_FRAME_IDS])
        assert torch.equal(expected[image_key(CAMERA)], batch[image_key(CAMERA)])
    changed = MixtureLoader({"robot": robot}, {"robot": 1}, {"robot": 3}, 7)
    with pytest.raises(ValueError, match="sources"):
        changed.load_state_dict(state)
