"""Collection without a simulator: DART-style noise injection (the rollout is perturbed, the labels stay the
expert's) and the captions' instruction distribution."""

import numpy as np
import pytest

import vlajepa.collect as collect_module
from vlajepa.collect import Attempt, CollectConfig, run_attempt
from vlajepa.constants import OBS_STATE
from vlajepa.envs.experts import EXPERT_REVISION


class PointEnv:
    """A 4-D point that moves by its action; the "expert" steers it to a fixed goal (privileged, like MetaWorld's)."""

    image_key = "observation.images.fake"
    image_keys = (image_key,)
    max_steps = 40
    render_fps = 10.0
    instruction = "go to the goal"
    image_shape = (2, 2, 3)

    def reset(self, seed: int):
        self.position = np.random.default_rng(seed).uniform(-1.0, 1.0, size=4)
        self.goal = np.zeros(4)
        return self._obs(), {"progress": self._progress()}

    def expert_action(self) -> np.ndarray:
        return np.clip(0.5 * (self.goal - self.position), -1.0, 1.0)

    def step(self, action):
        self.position = self.position + 0.5 * np.asarray(action)
        success = bool(np.abs(self.goal - self.position).max() < 0.01)
        progress = self._progress()
        return self._obs(), 10.0 * progress, False, False, {"success": success, "progress": progress}

    def _progress(self) -> float:
        return float(np.exp(-np.abs(self.goal - self.position).max()))

    def _obs(self):
        return {self.image_key: np.zeros(self.image_shape, np.uint8), OBS_STATE: self.position.astype(np.float32)}


@pytest.fixture
def point_env(monkeypatch):
    env = PointEnv()
    monkeypatch.setattr(collect_module, "_env_for", lambda attempt: env)
    return env


def _episode(noise: float):
    config = CollectConfig(tasks=("point",), paraphrases=False, action_noise=noise)
    return run_attempt(Attempt("point", 0, 5, config))


def test_noise_free_collection_records_the_executed_expert_trajectory(point_env):
    episode = _episode(0.0)
    # without noise each recorded state is the previous one moved by the recorded action
    assert np.allclose(episode.state[1:], episode.state[:-1] + 0.5 * episode.action[:-1], atol=1e-6)


def test_expert_episodes_record_what_each_action_led_to(point_env):
    """``reward``/``reached`` belong to the frame's action, ``progress`` to the frame's own observation."""
    episode = _episode(0.0)
    assert len(episode.reward) == len(episode.reached) == len(episode.progress) == len(episode.action)
    assert episode.reached[-1] and not episode.reached[:-1].any()  # kept episodes end at their first success
    np.testing.assert_allclose(episode.reward[:-1], 10.0 * episode.progress[1:], rtol=1e-6)
    assert episode.progress[0] == pytest.approx(np.exp(-np.abs(episode.state[0]).max()), rel=1e-5)


def test_noisy_rollout_is_perturbed_but_labelled_with_the_expert_action(point_env):
    clean, noisy = _episode(0.0), _episode(0.3)
    assert np.array_equal(clean.state[0], noisy.state[0])  # same initial state
    n = min(len(clean.state), len(noisy.state))
    assert not np.allclose(clean.state[:n], noisy.state[:n])  # the noise moved the visited states
    # the label at every visited state is what the expert would do there, not the executed (noisy) action
    expert_at_visited = np.clip(0.5 * (0.0 - noisy.state.astype(np.float64)), -1.0, 1.0)
    assert np.allclose(noisy.action, expert_at_visited, atol=1e-6)
    executed = (noisy.state[1:] - noisy.state[:-1]) / 0.5
    assert not np.allclose(executed, noisy.action[:-1], atol=1e-3)
    assert np.array_equal(noisy.state, _episode(0.3).state)  # seeded per attempt: it repeats exactly


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf")])
def test_bad_noise_is_rejected(noise):
    with pytest.raises(ValueError, match="action_noise"):
        CollectConfig(tasks=("reach-v3",), action_noise=noise)


def test_video_collection_refuses_action_noise(tmp_path, capsys):
    from vlajepa.cli import main

    assert main(["collect", "video", "--tasks", "reach", "--out", str(tmp_path / "v"), "--action-noise", "0.2"]) == 2
    assert "robot demonstrations only" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_captions_cycle_through_the_canonical_instruction_and_the_training_paraphrases(point_env):
    from vlajepa.collect import iter_successful_episodes
    from vlajepa.envs.language import LANGUAGE, training_caption, training_instructions

    reach = LANGUAGE["reach-v3"]
    options = training_instructions("reach")
    assert options == (reach.canonical, *reach.train)
    config = CollectConfig(tasks=("reach-v3",), episodes_per_task=len(options) + 2, workers=1)
    episodes = [item for item in iter_successful_episodes(config, progress=False) if hasattr(item, "instruction")]
    captions = [episode.instruction for episode in episodes]
    # in-distribution evaluation uses the canonical instruction: every dataset, however small, must contain it
    assert captions[0] == reach.canonical
    assert captions == [training_caption("reach", k) for k in range(len(captions))]
    counts = [captions.count(text) for text in options]
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1
    assert not set(captions) & set(reach.heldout)
    plain = CollectConfig(tasks=("reach-v3",), episodes_per_task=3, workers=1, paraphrases=False)
    assert {e.instruction for e in iter_successful_episodes(plain, progress=False) if hasattr(e, "instruction")} == {
        point_env.instruction
    }


def test_the_dataset_records_how_it_was_collected(point_env, tmp_path):
    import json

    from vlajepa.collect import collect_robot_dataset
    from vlajepa.data.lerobot import LeRobotDataset

    point_env.image_shape = (32, 32, 3)  # large enough for the video encoder
    config = CollectConfig(tasks=("reach-v3",), episodes_per_task=3, workers=1, seed=7)
    collect_robot_dataset(config, tmp_path / "data", progress=False)
    provenance = json.loads((tmp_path / "data" / "meta" / "info.json").read_text())["provenance"]
    assert (provenance["seed"], provenance["action_noise"], provenance["tasks"]) == (7, 0.0, ["reach-v3"])
    assert provenance["episode_seeds"] == [7, 8, 9]  # every attempt of the point succeeds: attempts 0, 1, 2
    assert "training_caption" in provenance["captions"] and "workers" not in provenance
    assert provenance["expert"]["revision"] == EXPERT_REVISION  # run_mt10 refuses data of other demonstrators
    assert provenance["video_quality"] == "lossless"  # and data stored at another quality
    dataset = LeRobotDataset(tmp_path / "data")
    assert len(dataset) > 0  # the extra metadata does not disturb reading
    assert dataset.meta.info["features"][point_env.image_key]["info"]["video.pix_fmt"] == "yuv444p"


def test_unknown_video_quality_is_refused():
    with pytest.raises(ValueError, match="unknown video quality 'best'.*lerobot.*lossless"):
        CollectConfig(tasks=("reach-v3",), video_quality="best")


def test_training_caption_rejects_a_negative_index():
    from vlajepa.envs.language import training_caption

    with pytest.raises(ValueError, match="index"):
        training_caption("reach", -1)
