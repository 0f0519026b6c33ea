"""On-policy rollouts (`vlajepa collect rollouts`): every episode recorded as LeRobot v3 robot data, readable and
trainable like the expert demonstrations."""

import json

import numpy as np
import pytest

from benchmarks.synthetic import save_random_checkpoint
from helpers.models import tiny_config
from vlajepa.cli import main
from vlajepa.constants import ACTION, DONE, OBS_STATE, PROGRESS, REWARD, SUCCESS
from vlajepa.data.lerobot import LeRobotDataset

pytestmark = pytest.mark.slow

MAX_STEPS = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_checkpoint(tmp_path_factory.mktemp("rollouts") / "ckpt", tiny_config())


@pytest.fixture(scope="module")
def rollouts(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("rollouts") / "data"
    argv = [
        "collect", "rollouts", "--policy", f"checkpoint:{checkpoint}", "--tasks", "reach", "--episodes-per-task", "2",
        "--max-steps", str(MAX_STEPS), "--workers", "1", "--seed", "77", "--no-progress", "--out", str(out),
    ]
    assert main(argv) == 0
    return out


def test_every_episode_is_recorded_with_outcomes_and_provenance(rollouts, checkpoint):
    dataset = LeRobotDataset(rollouts)
    meta = dataset.meta
    assert meta.total_episodes == 2  # failures are kept: an untrained policy fails both
    for key in (REWARD, SUCCESS, DONE, PROGRESS):
        assert key in meta.features
    lengths = meta.episodes["length"]
    assert list(lengths) == [MAX_STEPS, MAX_STEPS]
    assert meta.episodes["success"] == [False, False] and meta.episodes["setting"] == ["id", "id"]
    provenance = meta.info["provenance"]
    assert provenance["episode_seeds"] == meta.episodes["episode_seed"].tolist() == [77, 78]
    assert provenance["policy"]["path"] == str(checkpoint.resolve())
    assert len(provenance["policy"]["config_sha256"]) == 64
    done = dataset.column(DONE).reshape(-1)
    assert done.tolist() == ([False] * (MAX_STEPS - 1) + [True]) * 2
    assert not dataset.column(SUCCESS).any()
    assert np.abs(dataset.column(ACTION)).max() <= 1.0
    assert not (rollouts.parent / f"{rollouts.name}.partial").exists()


def test_recorded_actions_replay_the_episode(rollouts):
    """The recorded action is the executed one and the outcome columns line up with it: replaying an episode's
    actions from its seed reproduces its states, rewards and progress (progress[t] is frame t's own)."""
    from vlajepa.envs import MetaWorldEnv

    dataset = LeRobotDataset(rollouts, episodes=[1])
    config = tiny_config()
    env = MetaWorldEnv("reach-v3", image_size=config.image_size, camera=config.cameras[0], max_steps=MAX_STEPS)
    try:
        observation, info = env.reset(seed=dataset.meta.episodes[1]["episode_seed"])
        assert dataset[0]["task"] == env.instruction
        for index in range(len(dataset)):
            item = dataset[index]
            np.testing.assert_array_equal(item[OBS_STATE].numpy(), observation[OBS_STATE])
            assert item[PROGRESS].item() == np.float32(info["progress"])
            observation, reward, _, _, info = env.step(item[ACTION].numpy(), render=False)
            assert item[REWARD].item() == np.float32(reward)
    finally:
        env.close()


def test_rollouts_make_training_windows_like_expert_data(rollouts):
    from vlajepa.data.windows import RobotWindows

    windows = RobotWindows(rollouts, tiny_config())
    window = windows[0]
    assert window[ACTION].shape == (tiny_config().chunk_size, 4) and window["task"]


def test_the_rollout_command_checks_its_options(tmp_path, capsys, checkpoint):
    assert main(["collect", "rollouts", "--out", str(tmp_path / "r")]) == 2
    assert "needs --policy" in capsys.readouterr().err
    assert main(["collect", "robot", "--policy", "expert", "--out", str(tmp_path / "r")]) == 2
    assert "--policy applies to policy rollouts only" in capsys.readouterr().err
    argv = ["collect", "rollouts", "--policy", "expert", "--action-noise", "0.1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--action-noise applies to robot demonstrations only" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_interrupted_rollout_collection_leaves_no_dataset(tmp_path, monkeypatch, checkpoint):
    import vlajepa.eval.rollouts as rollouts_module
    from vlajepa.eval.policies import PolicySource
    from vlajepa.eval.runner import EvalConfig

    real = rollouts_module.iter_episodes

    def interrupted(*args, **kwargs):
        for count, result in enumerate(real(*args, **kwargs)):
            if count == 1:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(rollouts_module, "iter_episodes", interrupted)
    config = EvalConfig(tasks=("reach-v3",), episodes=2, max_steps=5, workers=1, camera="corner2", image_size=32)
    with pytest.raises(KeyboardInterrupt):
        rollouts_module.collect_rollouts(PolicySource("checkpoint", {"path": str(checkpoint)}), config, tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_expert_rollouts_record_success_in_the_episode_table(tmp_path, capsys):
    out = tmp_path / "expert"
    argv = ["collect", "rollouts", "--policy", "expert", "--tasks", "reach", "--episodes-per-task", "1",
            "--workers", "1", "--image-size", "32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == summary["successes"] == 1
    dataset = LeRobotDataset(out)
    assert dataset.meta.episodes["success"] == [True]
    reached = dataset.column(SUCCESS).reshape(-1)
    assert reached[-1] and not reached[:-1].any()  # the episode ends at the first success
