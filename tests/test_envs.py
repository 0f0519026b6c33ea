"""MetaWorld environment, instructions, robustness perturbations, domain shift and the perturbation grid."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vlajepa.constants import OBS_STATE, TASK, image_key  # noqa: E402
from vlajepa.envs import (  # noqa: E402
    ALL_TASKS,
    DEFAULT_MAX_STEPS,
    LANGUAGE,
    MAX_STEPS,
    MT10,
    UnknownTaskError,
    instruction,
    resolve_task,
)

pytest.importorskip("metaworld")

from vlajepa.envs import (  # noqa: E402
    DEFAULT_CAMERA,
    PERTURBATIONS,
    DomainShift,
    MetaWorldEnv,
    Perturbation,
    render_perturbation_grid,
)
from vlajepa.envs.language import task_of_instruction  # noqa: E402
from vlajepa.envs.perturbations import shift_layout  # noqa: E402
from vlajepa.envs.state import (  # noqa: E402
    ENVIRONMENT_STATE_NAMES,
    STATE_NAMES,
    environment_state_from_raw,
    state_from_raw,
)

SEED = 7


@pytest.fixture(scope="module")
def env():
    environment = MetaWorldEnv("pick-place-v3")
    yield environment
    environment.close()


def _reset(env: MetaWorldEnv, perturbation=None, domain_shift=None, seed: int = SEED) -> dict:
    env.perturbation, env.domain_shift = perturbation, domain_shift
    obs, _ = env.reset(seed=seed)
    return obs


# -- tasks and language ------------------------------------------------------------------------------------------
def test_task_lists_match_metaworld():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert len(ALL_TASKS) == 50 and set(ALL_TASKS) == set(ALL_V3_ENVIRONMENTS)
    assert len(MT10) == 10 and set(MT10) <= set(ALL_TASKS)
    assert all(MAX_STEPS[task] >= DEFAULT_MAX_STEPS for task in ALL_TASKS)
    assert MAX_STEPS["push-back-v3"] > DEFAULT_MAX_STEPS


def test_resolve_task_accepts_short_names():
    assert resolve_task("reach") == "reach-v3"
    assert resolve_task("pick-place-v3") == "pick-place-v3"
    assert resolve_task("Drawer_Open") == "drawer-open-v3"


def test_unknown_task_names_the_task_and_close_matches():
    with pytest.raises(UnknownTaskError) as excinfo:
        resolve_task("pick-plase")
    message = str(excinfo.value)
    assert "'pick-plase'" in message and "pick-place-v3" in message
    assert isinstance(excinfo.value, ValueError)


def test_language_tables_complete_and_disjoint():
    assert set(LANGUAGE) == set(ALL_TASKS)
    for task, language in LANGUAGE.items():
        assert len(language.train) >= 5 and len(language.heldout) >= 3, task
        seen = {language.canonical, *language.train}
        assert len(seen) == 1 + len(language.train), task
        assert not seen & set(language.heldout), task
        assert len(set(language.heldout)) == len(language.heldout), task
        for text in (language.canonical, *language.train, *language.heldout):  # no phrasing names two tasks
            assert task_of_instruction(text) == task, text
    assert task_of_instruction("do something else") is None


def test_instruction_splits():
    assert instruction("reach") == LANGUAGE["reach-v3"].canonical
    rng = np.random.default_rng(0)
    assert instruction("reach", "train", rng=rng) in LANGUAGE["reach-v3"].train
    assert instruction("reach", "heldout") == LANGUAGE["reach-v3"].heldout[0]
    with pytest.raises(ValueError, match="split"):
        instruction("reach", "test")


# -- perturbation configuration -----------------------------------------------------------------------------------
def test_perturbation_validation():
    with pytest.raises(ValueError, match="severity"):
        Perturbation("camera", severity=4)
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        Perturbation("fog")
    assert PERTURBATIONS == ("camera", "robot_init", "language", "lighting", "background", "noise", "layout")


def test_shift_layout_leaves_the_sampling_box():
    low, high = np.array([-0.1, 0.6, 0.02, -0.1, 0.8, 0.05]), np.array([0.1, 0.7, 0.02, 0.1, 0.9, 0.3])
    sample = np.array([0.05, 0.65, 0.02, -0.08, 0.85, 0.2])
    for side in (1.0, -1.0):
        shifted = shift_layout(sample, low, high, side, margin=0.02)
        x = shifted[0::3]
        assert np.all((x >= high[0::3] + 0.02) | (x <= low[0::3] - 0.02))
        np.testing.assert_array_equal(shifted[1::3], sample[1::3])  # y and z untouched
        np.testing.assert_array_equal(shifted[2::3], sample[2::3])


# -- environment --------------------------------------------------------------------------------------------------
def test_observation_keys_dtypes_shapes(env):
    obs = _reset(env)
    key = image_key(DEFAULT_CAMERA)
    assert env.image_key == key and set(obs) == {key, OBS_STATE, TASK}
    assert obs[key].dtype == np.uint8 and obs[key].shape == (96, 96, 3)
    assert obs[OBS_STATE].dtype == np.float32 and obs[OBS_STATE].shape == (4,)
    assert obs[TASK] == env.instruction == LANGUAGE["pick-place-v3"].canonical
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (4,) and env.max_steps == MAX_STEPS["pick-place-v3"]
    assert env.render_fps == 80 and env.task == "pick-place-v3"

    obs, reward, terminated, truncated, info = env.step(np.array([5.0, -5.0, 0.0, 1.0]))  # clipped to [-1, 1]
    assert isinstance(reward, float) and isinstance(info["success"], bool)
    assert not terminated and not truncated
    assert env.expert_action().dtype == np.float32 and env.expert_action().shape == (4,)


def test_state_and_scene_state_select_raw_observation_fields():
    raw = np.arange(39.0)
    state = state_from_raw(raw)
    assert state.dtype == np.float32 and len(state) == len(STATE_NAMES) == 4
    np.testing.assert_array_equal(state, [0, 1, 2, 3])
    scene = environment_state_from_raw(raw)
    assert len(scene) == len(ENVIRONMENT_STATE_NAMES) == 9
    np.testing.assert_array_equal(scene, [4, 5, 6, 11, 12, 13, 36, 37, 38])  # no quaternions
    with pytest.raises(ValueError, match="39-D"):
        state_from_raw(np.zeros(18))


def test_environment_state_reads_objects_and_goal_from_the_simulator_and_survives_the_expert():
    env = MetaWorldEnv("door-open-v3")
    try:
        with pytest.raises(RuntimeError, match="reset"):
            env.environment_state()
        env.reset(seed=SEED)
        scene = env.environment_state()
        np.testing.assert_allclose(scene[:3], env._mw._get_pos_objects()[:3], atol=1e-6)
        np.testing.assert_allclose(scene[6:9], env._mw._target_pos, atol=1e-6)
        first = env.expert_action()
        # door-open's scripted expert edits the observation it is given; the environment hands it a copy, so a
        # second call and the scene state read afterwards see the simulator's values.
        np.testing.assert_array_equal(env.expert_action(), first)
        np.testing.assert_array_equal(env.environment_state(), scene)
        assert scene.dtype == np.float32
    finally:
        env.close()


def test_reset_is_deterministic(env):
    first, second = _reset(env), _reset(env)
    np.testing.assert_array_equal(first[env.image_key], second[env.image_key])
    np.testing.assert_array_equal(first[OBS_STATE], second[OBS_STATE])
    other = _reset(env, seed=SEED + 1)
    assert not np.array_equal(first[env.image_key], other[env.image_key])  # objects moved


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_perturbation_changes_episode_and_is_deterministic(env, name):
    clean = _reset(env)
    perturbation = Perturbation(name, severity=2, seed=3)
    first, second = _reset(env, perturbation), _reset(env, perturbation)
    np.testing.assert_array_equal(first[env.image_key], second[env.image_key])
    np.testing.assert_array_equal(first[OBS_STATE], second[OBS_STATE])
    assert first[TASK] == second[TASK]
    if name == "language":
        assert first[TASK] != clean[TASK] and first[TASK] in LANGUAGE["pick-place-v3"].heldout
        np.testing.assert_array_equal(first[env.image_key], clean[env.image_key])
    else:
        assert np.abs(first[env.image_key].astype(int) - clean[env.image_key]).mean() > 0.1
    if name == "robot_init":
        assert np.linalg.norm(first[OBS_STATE][:3] - clean[OBS_STATE][:3]) > 0.02
    if name == "noise":
        assert not np.array_equal(first[OBS_STATE], clean[OBS_STATE])
    # Model edits are undone: the unperturbed episode renders exactly as before.
    np.testing.assert_array_equal(_reset(env)[env.image_key], clean[env.image_key])


def test_perturbation_seed_matters(env):
    a = _reset(env, Perturbation("background", 3, seed=0))[env.image_key]
    b = _reset(env, Perturbation("background", 3, seed=1))[env.image_key]
    assert not np.array_equal(a, b)


def test_cameras():
    with pytest.raises(ValueError, match="unknown camera 'gripperPOV'"):
        MetaWorldEnv("reach", camera="gripperPOV")
    env = MetaWorldEnv("reach", image_size=32, camera="corner3")
    try:
        obs, _ = env.reset(seed=SEED)
        assert set(obs) == {image_key("corner3"), OBS_STATE, TASK} and obs[image_key("corner3")].shape == (32, 32, 3)
    finally:
        env.close()


@pytest.mark.parametrize("task", ["reach-v3", "drawer-close-v3"])
def test_expert_solves_task_within_step_limit(task):
    env = MetaWorldEnv(task, image_size=32)
    try:
        env.reset(seed=SEED)
        for _ in range(env.max_steps):
            _, _, terminated, truncated, info = env.step(env.expert_action())
            if terminated or truncated:
                break
        assert terminated and info["success"] and not truncated
    finally:
        env.close()


# -- domain shift -------------------------------------------------------------------------------------------------
def _red_fraction(image: np.ndarray) -> float:
    """Share of pixels in the Sawyer arm's dark red."""
    r, g, b = (image[..., c].astype(int) for c in range(3))
    return float(((r > 60) & (r > 2 * g) & (r > 2 * b)).mean())


@pytest.mark.parametrize("arm", ["hidden", "recolored"])
def test_domain_shift_changes_arm_only_appearance(env, arm):
    still = dict(viewpoint_severity=0, camera_drift_deg=0.0, camera_jitter_deg=0.0)
    shift = DomainShift(arm=arm, randomize_background=False, randomize_lighting=False, seed=4, **still)
    clean = _reset(env)
    shifted = _reset(env, domain_shift=shift)
    assert _red_fraction(clean[env.image_key]) > 0.05
    assert _red_fraction(shifted[env.image_key]) < 0.25 * _red_fraction(clean[env.image_key])
    np.testing.assert_array_equal(shifted[OBS_STATE], clean[OBS_STATE])  # the robot itself is unchanged
    np.testing.assert_array_equal(_reset(env, domain_shift=shift)[env.image_key], shifted[env.image_key])


def test_domain_shift_moves_camera_during_episode():
    plan = DomainShift(seed=1).plan(episode_seed=0, max_steps=100)
    assert plan.view_at(0) != plan.view_at(50)
    assert plan == DomainShift(seed=1).plan(episode_seed=0, max_steps=100)


# -- grid and CLI -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_perturbation_grid_shows_every_perturbation(tmp_path):
    result = render_perturbation_grid("reach", tmp_path / "grid.png", image_size=48, seed=1)
    assert result.path.is_file() and result.path.stat().st_size > 0
    for name, differences in result.differences.items():
        if name == "language":
            original, *paraphrases = result.instructions[name]
            assert all(text != original for text in paraphrases)
        else:
            assert len(differences) == 3 and min(differences) > 0, name


def test_cli_perturb_grid_rejects_unknown_task(tmp_path, capsys):
    from vlajepa.cli import main

    assert main(["perturb-grid", "--task", "pick-plase", "--out", str(tmp_path / "g.png")]) == 2
    assert "pick-place-v3" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("name", [None, "camera", "noise", "lighting"])
def test_skipping_renders_leaves_later_observations_unchanged(name):
    """The evaluation renders only where the policy looks (chunk ends); every observation it reads must equal the
    one an always-rendering episode gives (noise draws included)."""
    perturbation = Perturbation(name, severity=3, seed=5) if name else None
    actions = np.random.default_rng(0).uniform(-1, 1, size=(12, 4)).astype(np.float32)
    runs = []
    for every in (1, 4):
        env = MetaWorldEnv("push-v3", image_size=32, perturbation=perturbation)
        try:
            env.reset(seed=SEED)
            seen = []
            for i, action in enumerate(actions):
                obs, *_ = env.step(action, render=(i + 1) % every == 0)
                if every > 1 and (i + 1) % every:
                    assert env.image_key not in obs and set(obs) == {OBS_STATE, TASK}
                if (i + 1) % 4 == 0:
                    seen.append(obs)
            runs.append(seen)
        finally:
            env.close()
    for full, skipped in zip(*runs, strict=True):
        np.testing.assert_array_equal(full[OBS_STATE], skipped[OBS_STATE])
        np.testing.assert_array_equal(full[image_key(DEFAULT_CAMERA)], skipped[image_key(DEFAULT_CAMERA)])


def test_reach_expert_steers_the_fingertips_to_the_goal():
    """reach-v3 scores the fingertip centre, 4.5 cm below the hand: the demonstrator must aim that point, not the
    hand, at the goal; the other experts see the raw observation."""
    from vlajepa.envs.experts import expert_observation

    env = MetaWorldEnv("reach-v3", image_size=32)
    try:
        env.reset(seed=SEED)
        for _ in range(8):  # away from the start, where the gain saturates less
            env.step(env.expert_action(), render=False)
        sim = env._mw
        offset = sim.tcp_center - env._raw_obs[:3]
        assert offset[2] < -0.03  # the premise: the fingertips hang centimetres below the hand
        expected = np.clip(5.0 * (sim._target_pos - sim.tcp_center), -1.0, 1.0)  # MetaWorld's move(), p=5
        np.testing.assert_allclose(env.expert_action()[:3], expected, atol=1e-5)
    finally:
        env.close()
    raw = np.arange(12, dtype=np.float64)
    np.testing.assert_array_equal(expert_observation("push-v3", raw, np.array([0, 0, -0.045])), raw)
    moved = expert_observation("reach-v3", raw, np.array([0, 0, -0.045]))
    np.testing.assert_allclose(moved[-3:], raw[-3:] + [0, 0, 0.045])
    assert raw[-1] == 11  # the caller's array is left alone


# -- simulator snapshots and task progress ---------------------------------------------------------------------
def _steps(env: MetaWorldEnv, actions: np.ndarray) -> list[tuple]:
    return [env.step(action) for action in actions]


def _assert_same_steps(first: list[tuple], second: list[tuple]) -> None:
    for (obs_a, reward_a, term_a, trunc_a, info_a), (obs_b, reward_b, term_b, trunc_b, info_b) in zip(
        first, second, strict=True
    ):
        assert set(obs_a) == set(obs_b) and obs_a[TASK] == obs_b[TASK]
        for key in set(obs_a) - {TASK}:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b)  # bit for bit, not approximately
        assert set(info_a) == set(info_b)
        for key in info_a:
            np.testing.assert_array_equal(info_a[key], info_b[key])


@pytest.mark.parametrize(("task", "name"), [("push-v3", None), ("door-open-v3", "noise")])
def test_sim_state_restore_replays_the_same_steps_bit_for_bit(task, name):
    """Snapshot after k steps, step m actions, restore, step them again: identical observations, rewards and info,
    even after a different action sequence ran in between; a restore works any number of times."""
    perturbation = Perturbation(name, severity=2, seed=3) if name else None
    rng = np.random.default_rng(1)
    env = MetaWorldEnv(task, image_size=32, max_steps=40, perturbation=perturbation)
    try:
        env.reset(seed=SEED)
        for _ in range(6):
            env.step(env.expert_action(), render=False)
        snapshot = env.get_sim_state()
        actions = rng.uniform(-1, 1, size=(8, 4)).astype(np.float32)
        reference = _steps(env, actions)
        for _ in range(2):
            env.set_sim_state(snapshot)
            _steps(env, rng.uniform(-1, 1, size=(5, 4)).astype(np.float32))  # a different future, then undone
            env.set_sim_state(snapshot)
            _assert_same_steps(reference, _steps(env, actions))
        # negative control: without the restore the same actions give a different rollout
        with pytest.raises(AssertionError):
            _assert_same_steps(reference, _steps(env, actions))
    finally:
        env.close()


def test_sim_state_restores_the_step_count_and_stays_in_its_episode():
    env = MetaWorldEnv("reach-v3", image_size=16, max_steps=5)
    try:
        env.reset(seed=SEED)
        snapshot = env.get_sim_state()
        for _ in range(5):
            *_, truncated, _ = env.step(np.zeros(4, dtype=np.float32), render=False)
        assert truncated
        env.set_sim_state(snapshot)  # back to step 0: the whole step budget again
        assert not any(env.step(np.zeros(4, dtype=np.float32), render=False)[3] for _ in range(4))
        env.reset(seed=SEED)
        with pytest.raises(ValueError, match="another episode"):
            env.set_sim_state(snapshot)
    finally:
        env.close()


def test_progress_is_the_normalized_dense_reward():
    from vlajepa.envs.metaworld_env import MAX_REWARD

    env = MetaWorldEnv("reach-v3", image_size=16)
    try:
        _, info = env.reset(seed=SEED)
        assert 0.0 <= info["progress"] < 0.5
        progress = [info["progress"]]
        while True:
            _, reward, terminated, truncated, info = env.step(env.expert_action(), render=False)
            assert info["progress"] == np.clip(reward / MAX_REWARD, 0.0, 1.0)
            progress.append(info["progress"])
            if terminated or truncated:
                break
        assert info["success"] and progress[-1] > 0.9 > progress[0]  # the expert makes progress to the goal
    finally:
        env.close()
