"""End-to-end: scripted-expert collection into LeRobot v3 and the evaluation harness (small, marked slow)."""

import dataclasses
import json

import numpy as np
import pytest

import vlajepa.collect as collect_module
from vlajepa.cli import main
from vlajepa.collect import CollectConfig, collect_robot_dataset, collect_video_set
from vlajepa.constants import ACTION, DONE, OBS_ENV_STATE, OBS_STATE, PROGRESS, REWARD, SUCCESS
from vlajepa.data.lerobot import LeRobotDataset
from vlajepa.data.videos import VideoSet
from vlajepa.eval.policies import PolicySource
from vlajepa.eval.runner import EvalConfig, evaluate

pytestmark = pytest.mark.slow


def _columns(root):
    dataset = LeRobotDataset(root)
    return {key: dataset.column(key) for key in (OBS_STATE, ACTION, "episode_index", "frame_index")}


def test_collection_is_deterministic_and_reads_back(tmp_path):
    config = CollectConfig(tasks=("reach-v3", "button-press-topdown-v3"), episodes_per_task=2, workers=2, seed=7)
    summary = collect_robot_dataset(config, tmp_path / "a", progress=False)
    assert summary.kept == {"reach-v3": 2, "button-press-topdown-v3": 2}
    serial = dataclasses.replace(config, workers=1)
    collect_robot_dataset(serial, tmp_path / "b", progress=False)

    a, b = _columns(tmp_path / "a"), _columns(tmp_path / "b")
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    dataset = LeRobotDataset(tmp_path / "a")
    assert dataset.meta.total_episodes == 4
    # what each action led to: the episodes end at their first success, with progress reached
    reached, done = dataset.column(SUCCESS).reshape(-1), dataset.column(DONE).reshape(-1)
    assert np.array_equal(reached, done) and reached.sum() == 4
    assert dataset.column(PROGRESS).max() <= 1.0 and dataset.column(REWARD).max() > 0.0
    assert np.abs(dataset.column(ACTION)).max() <= 1.0
    item = dataset[0]
    key = dataset.meta.video_keys[0]
    assert item[key].shape == (3, 96, 96) and item["task"]
    # The recorded image is the one the environment rendered for that state: frames differ along an episode.
    assert not np.array_equal(dataset[0][key].numpy(), dataset[5][key].numpy())


def test_stored_frames_are_what_evaluation_renders(tmp_path):
    """Training and evaluation see the same pixels: replaying a stored demonstration's actions from its recorded
    seed in a fresh environment renders its stored frames again (up to colour rounding of the lossless storage)
    and its states exactly."""
    from vlajepa.envs import MetaWorldEnv

    config = CollectConfig(tasks=("push-v3",), episodes_per_task=1, workers=1, seed=3)
    collect_robot_dataset(config, tmp_path / "d", progress=False)
    dataset = LeRobotDataset(tmp_path / "d")
    seed = dataset.meta.info["provenance"]["episode_seeds"][0]
    key = dataset.meta.video_keys[0]
    env = MetaWorldEnv("push-v3", image_size=96)
    observation, _ = env.reset(seed=seed)
    worst = 0
    for index in range(len(dataset)):
        item = dataset[index]
        stored = (item[key].permute(1, 2, 0).numpy() * 255).round().astype(int)
        worst = max(worst, int(np.abs(stored - observation[key]).max()))
        assert np.array_equal(item[OBS_STATE].numpy(), observation[OBS_STATE]), index
        observation, *_ = env.step(item[ACTION].numpy())
    env.close()
    assert worst <= 2


def test_environment_state_is_recorded_beside_the_proprio_state(tmp_path, capsys):
    config = CollectConfig(tasks=("door-open-v3",), episodes_per_task=1, workers=1, seed=2)
    collect_robot_dataset(config, tmp_path / "plain", progress=False)
    scene_config = dataclasses.replace(config, environment_state=True)
    collect_robot_dataset(scene_config, tmp_path / "scene", progress=False)
    plain, scene = (LeRobotDataset(tmp_path / name) for name in ("plain", "scene"))
    feature = scene.features[OBS_ENV_STATE]
    assert feature["shape"] == [9] and feature["names"][:3] == ["obj1_x", "obj1_y", "obj1_z"]
    assert OBS_ENV_STATE not in plain.features
    # The same episode: the proprio state and the actions are unchanged by recording the scene.
    np.testing.assert_array_equal(scene.column(OBS_STATE), plain.column(OBS_STATE))
    np.testing.assert_array_equal(scene.column(ACTION), plain.column(ACTION))
    assert np.isfinite(scene.column(OBS_ENV_STATE)).all()
    assert main(["collect", "video", "--environment-state", "--out", str(tmp_path / "v")]) == 2
    assert "--environment-state applies to robot demonstrations only" in capsys.readouterr().err


def test_a_still_camera_films_the_same_episode_without_camera_motion(tmp_path, capsys):
    moving = CollectConfig(tasks=("drawer-close-v3",), episodes_per_task=1, workers=1, seed=3, domain_shift=True)
    still = dataclasses.replace(moving, still_camera=True)
    collect_video_set(moving, tmp_path / "moving", progress=False)
    collect_video_set(still, tmp_path / "still", progress=False)
    frames = {name: VideoSet(tmp_path / name).frames(0).astype(np.float64) for name in ("moving", "still")}
    assert frames["moving"].shape == frames["still"].shape  # the same episode and look
    change = {name: np.abs(np.diff(f, axis=0)).mean() for name, f in frames.items()}
    assert change["still"] < 0.5 * change["moving"]  # the shake and drift moved every pixel
    assert VideoSet(tmp_path / "still").meta["provenance"]["still_camera"] is True
    with pytest.raises(ValueError, match="still_camera"):
        dataclasses.replace(moving, domain_shift=False, still_camera=True)
    for option in (["--still-camera"], ["--arm", "visible"]):
        assert main(["collect", "robot", *option, "--out", str(tmp_path / "r")]) == 2
        assert f"{option[0]} applies to domain-shifted video only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="arm applies"):
        dataclasses.replace(moving, domain_shift=False, arm="visible")
    visible = dataclasses.replace(still, arm="visible")
    collect_video_set(visible, tmp_path / "visible", progress=False)
    shown = VideoSet(tmp_path / "visible").frames(0).astype(np.float64)
    assert np.abs(shown[0] - frames["still"][0]).mean() > 1.0  # the arm is drawn where it was hidden
    assert VideoSet(tmp_path / "visible").meta["provenance"]["arm"] == "visible"


def test_video_set_has_no_actions_and_captions(tmp_path):
    config = CollectConfig(tasks=("reach-v3",), episodes_per_task=2, workers=1, seed=3, domain_shift=True)
    collect_video_set(config, tmp_path / "v", progress=False)
    videos = VideoSet(tmp_path / "v")
    assert len(videos) == 2 and all(videos.captions)
    assert videos.frames(0).shape[1:] == (96, 96, 3)
    assert not list((tmp_path / "v").rglob("*.parquet"))


def test_interrupted_collection_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = collect_module.run_attempt

    def flaky(attempt):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(attempt)

    monkeypatch.setattr(collect_module, "run_attempt", flaky)
    config = CollectConfig(tasks=("reach-v3",), episodes_per_task=2, workers=1)
    with pytest.raises(KeyboardInterrupt):
        collect_robot_dataset(config, tmp_path / "robot", progress=False)
    assert not (tmp_path / "robot").exists()
    assert not any(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"


def test_eval_expert_succeeds_and_random_is_worker_independent(tmp_path):
    expert, _ = evaluate(PolicySource("expert"), EvalConfig(tasks=("reach-v3",), episodes=3, workers=2), progress=False)
    assert [e.success for e in expert] == [True, True, True]

    config = EvalConfig(tasks=("reach-v3", "push-v3"), episodes=2, max_steps=15, workers=1, seed=11)
    serial, _ = evaluate(PolicySource("random", {"seed": 1}), config, progress=False)
    parallel, _ = evaluate(
        PolicySource("random", {"seed": 1}), dataclasses.replace(config, workers=2, group_size=1), progress=False
    )
    assert serial == parallel
    assert all(e.length == 15 and not e.success for e in serial)


def test_eval_cli_writes_schema_and_video(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(
        [
            "eval",
            "--policy",
            "expert",
            "--tasks",
            "reach-v3",
            "--settings",
            "id,lighting",
            "--episodes",
            "2",
            "--workers",
            "1",
            "--videos",
            "1",
            "--video-dir",
            str(tmp_path / "videos"),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "res.json").read_text())
    assert report["command"].startswith("vlajepa") or "eval" in report["command"]
    assert report["wall_time_s"] > 0
    settings = {(r["task"], r["setting"]) for r in report["rows"]}
    assert settings == {("reach-v3", "id"), ("reach-v3", "lighting")}
    for row in report["rows"]:
        assert row["episodes"] == 2 and row["ci_low"] <= row["success_rate"] <= row["ci_high"]
    assert (tmp_path / "res.md").exists() and (tmp_path / "res.png").exists()
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2


def test_unknown_task_names_the_task(capsys):
    assert main(["eval", "--policy", "expert", "--tasks", "pick-plase-v3"]) == 2
    err = capsys.readouterr().err
    assert "pick-plase" in err and "pick-place-v3" in err and "Traceback" not in err


def test_episode_seeds_follow_the_task_stride():
    from vlajepa.collect import ATTEMPT_STRIDE
    from vlajepa.eval.runner import EvalConfig

    default = EvalConfig(tasks=("reach-v3", "push-v3"))
    assert default.episode_seed(1, 3) == 1_000_000 + 10_000 + 3
    replay = EvalConfig(tasks=("reach-v3", "push-v3"), seed=0, task_seed_stride=ATTEMPT_STRIDE)
    assert replay.episode_seed(1, 3) == ATTEMPT_STRIDE + 3  # collection's seed of task 1, attempt 3
