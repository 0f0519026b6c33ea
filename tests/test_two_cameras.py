"""Two cameras end to end: the environment renders one image per camera, the collector records each as its own
video feature, a two-camera BC policy trains on them, and the evaluation harness renders exactly its cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlajepa.cli import main
from vlajepa.collect import CollectConfig, collect_robot_dataset
from vlajepa.constants import OBS_STATE, TASK, image_key
from vlajepa.data.lerobot import LeRobotDataset
from vlajepa.envs import MetaWorldEnv, Perturbation

CAMERAS = ("corner2", "corner")  # the tiny preset's camera, then a second one
KEYS = tuple(image_key(camera) for camera in CAMERAS)
SEED = 3


def _reset(env: MetaWorldEnv, perturbation: Perturbation | None = None) -> dict:
    env.perturbation = perturbation
    return env.reset(seed=SEED)[0]


def test_a_two_camera_env_renders_one_image_per_camera():
    both = MetaWorldEnv("reach", image_size=32, camera=CAMERAS)
    one = MetaWorldEnv("reach", image_size=32, camera=CAMERAS[0])
    try:
        assert both.cameras == CAMERAS and both.image_keys == KEYS and both.camera == CAMERAS[0]
        assert set(both.observation_space.spaces) == {*KEYS, OBS_STATE, TASK}
        obs = _reset(both)
        step, *_ = both.step(np.array([0.5, 0.0, 0.0, 0.0]))
        for frame in (obs, step):
            assert set(frame) == {*KEYS, OBS_STATE, TASK}
            assert all(frame[key].shape == (32, 32, 3) and frame[key].dtype == np.uint8 for key in KEYS)
            assert not np.array_equal(frame[KEYS[0]], frame[KEYS[1]])  # two different views
        # the first camera's image is the one a one-camera env renders of the same state
        one_step = (_reset(one), one.step(np.array([0.5, 0.0, 0.0, 0.0]))[0])
        np.testing.assert_array_equal(one_step[0][KEYS[0]], obs[KEYS[0]])
        np.testing.assert_array_equal(one_step[1][KEYS[0]], step[KEYS[0]])
        np.testing.assert_array_equal(one_step[1][OBS_STATE], step[OBS_STATE])
    finally:
        both.close()
        one.close()


@pytest.mark.parametrize("name", ["camera", "lighting", "noise"])
def test_perturbations_change_every_view(name):
    env = MetaWorldEnv("reach", image_size=32, camera=CAMERAS)
    try:
        clean = _reset(env)
        perturbed = _reset(env, Perturbation(name, severity=3))
        for key in KEYS:
            assert not np.array_equal(clean[key], perturbed[key]), key
        np.testing.assert_array_equal(_reset(env, Perturbation(name, severity=3))[KEYS[1]], perturbed[KEYS[1]])
    finally:
        env.close()


def test_camera_lists_are_checked():
    with pytest.raises(ValueError, match="duplicate cameras"):
        MetaWorldEnv("reach", camera=("corner", "corner"))
    with pytest.raises(ValueError, match="unknown camera 'nowhere'"):
        MetaWorldEnv("reach", camera=("corner", "nowhere"))


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_cameras") / "robot"
    config = CollectConfig(tasks=("reach-v3",), episodes_per_task=2, image_size=32, camera=CAMERAS, workers=1)
    collect_robot_dataset(config, root, progress=False)
    return root


@pytest.mark.slow
def test_the_collector_records_every_camera_and_a_two_camera_policy_trains_and_evaluates(robot, tmp_path, capsys):
    dataset = LeRobotDataset(robot)
    for key in KEYS:
        assert dataset.meta.features[key]["dtype"] == "video" and dataset.meta.features[key]["shape"] == [32, 32, 3]
    assert dataset.meta.info["provenance"]["camera"] == list(CAMERAS)
    assert dataset.meta.total_episodes == 2

    run = tmp_path / "bc"
    cameras = f"model.cameras=[{','.join(CAMERAS)}]"
    train = ["train", "--method", "bc", "--robot", str(robot), "--out", str(run), "--config", "tiny",
             "--steps", "2", "--batch-size", "4", "--no-progress", "--set", cameras]  # fmt: skip
    assert main(train) == 0
    checkpoint = run / "checkpoints" / "last"
    capsys.readouterr()

    out = tmp_path / "eval" / "results"
    evaluate = ["eval", "--policy", f"checkpoint:{checkpoint}", "--tasks", "reach", "--episodes", "1",
                "--max-steps", "8", "--workers", "1", "--videos", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(evaluate) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["config"]["camera"] == list(CAMERAS)  # rendered every camera the checkpoint reads
    assert sum(row["episodes"] for row in report["rows"]) == 1
    assert len(report["videos"]) == 1  # the video shows the first camera

    # a camera list that is not the policy's is refused before any rollout
    assert main([*evaluate, "--camera", CAMERAS[0]]) == 2
    assert "reads the cameras corner2,corner" in capsys.readouterr().err

    # the policy's own rollouts record every camera it reads
    rollouts = tmp_path / "rollouts"
    argv = ["collect", "rollouts", "--policy", f"checkpoint:{checkpoint}", "--tasks", "reach",
            "--episodes-per-task", "1", "--max-steps", "4", "--workers", "1", "--no-progress",
            "--out", str(rollouts)]  # fmt: skip
    assert main(argv) == 0
    assert set(KEYS) <= set(LeRobotDataset(rollouts).meta.features)


def test_collect_parses_a_comma_separated_camera_list(tmp_path, capsys):
    out = tmp_path / "robot"
    assert main(["collect", "robot", "--tasks", "reach", "--camera", "corner,nowhere", "--out", str(out)]) == 2
    assert "unknown camera 'nowhere'" in capsys.readouterr().err
    assert not out.exists()


def test_configs_hold_one_camera_as_its_name_and_several_as_a_tuple():
    """Collection and evaluation configs normalize their camera option alike (``constants.camera_setting``): a list
    becomes a hashable tuple, and one camera is its name however it was given."""
    from vlajepa.eval.runner import EvalConfig

    def collect(camera):
        return CollectConfig(tasks=("reach-v3",), camera=camera)

    def evaluate(camera):
        return EvalConfig(tasks=("reach-v3",), camera=camera)

    for make in (collect, evaluate):
        assert make(["corner"]).camera == "corner" and make(("corner",)).camera == "corner"
        assert make(["workspace_oblique", "corner"]).camera == ("workspace_oblique", "corner")
        assert make(None).camera is None and make("corner").camera == "corner"
