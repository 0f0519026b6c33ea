"""``VLAJEPAPolicy``: the evaluation interface, un-normalization, and save/load with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers.models import single_thread, tiny_config
from vlajepa.checkpoint import CONFIG_FILE, NORMALIZATION_FILE, WEIGHTS_FILE, CheckpointError
from vlajepa.constants import ACTION, OBS_STATE, TASK, image_key
from vlajepa.nn.config import TargetConfig
from vlajepa.nn.target import save_encoder
from vlajepa.normalize import Normalizer
from vlajepa.policies.protocol import Policy
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def make_policy(n_action_steps: int | None = None, **changes) -> VLAJEPAPolicy:
    torch.manual_seed(0)
    stats = {
        ACTION: {"min": [-2.0, 0.0, 0.0, 5.0], "max": [2.0, 10.0, 1.0, 7.0]},
        OBS_STATE: {"mean": [0.5, 0.0, 0.2, 1.0], "std": [0.1, 1.0, 0.2, 3.0]},
    }
    normalizer = Normalizer.from_stats(stats, {ACTION: "min_max", OBS_STATE: "mean_std"})
    policy = VLAJEPAPolicy(tiny_config(**changes), normalizer, n_action_steps=n_action_steps, seed=0)
    with torch.no_grad():  # leave the zero-initialised output layers so actions depend on the weights
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return policy.eval()


def observation(size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        image_key("corner2"): rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        TASK: "open the drawer",
    }


def test_policy_implements_the_harness_interface():
    policy = make_policy()
    assert isinstance(policy, Policy)
    policy.reset()
    chunk = policy.predict_action_chunk(observation())
    assert chunk.shape == (4, 4) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
    assert make_policy(n_action_steps=2).predict_action_chunk(observation()).shape == (2, 4)


def test_actions_are_unnormalized_with_the_saved_statistics():
    policy = make_policy()
    obs = observation()
    chunk = policy.predict_action_chunk(obs)
    policy.reseed(0)
    state = (obs[OBS_STATE] - np.array([0.5, 0.0, 0.2, 1.0])) / np.array([0.1, 1.0, 0.2, 3.0])
    batch = {
        image_key("corner2"): torch.from_numpy(obs[image_key("corner2")]).permute(2, 0, 1)[None].float()
        / 255,
        OBS_STATE: torch.tensor(state, dtype=torch.float32)[None],
        TASK: [obs[TASK]],
    }
    normalized = (
        policy.predict_action(batch, generator=torch.Generator().manual_seed(0))[0].double().numpy()
    )
    low, high = np.array([-2.0, 0.0, 0.0, 5.0]), np.array([2.0, 10.0, 1.0, 7.0])
    np.testing.assert_allclose(chunk, (normalized + 1) / 2 * (high - low) + low, rtol=1e-4, atol=1e-4)


def test_reseed_reproduces_and_images_of_another_size_are_resized():
    policy = make_policy()
    policy.reseed(3)
    first = policy.predict_action_chunk(observation(size=48))
    policy.reseed(3)
    assert np.array_equal(first, policy.predict_action_chunk(observation(size=48)))
    assert not np.array_equal(first, policy.predict_action_chunk(observation(size=48)))


def test_batched_prediction_matches_single_observations_and_rng_state_round_trips():
    policy = make_policy()
    observations = [observation(seed=i) for i in range(3)]
    state = policy.get_rng_state()
    batched = policy.predict_action_chunk_batch(observations)
    assert batched.shape == (3, 4, 4) and batched.dtype == np.float32
    policy.set_rng_state(state)
    assert np.array_equal(policy.predict_action_chunk_batch(observations), batched)
    policy.reseed(5)
    first = policy.predict_action_chunk(observations[0])
    policy.reseed(5)
    assert np.array_equal(policy.predict_action_chunk_batch(observations[:1])[0], first)


def test_select_action_hands_out_a_chunk_step_by_step():
    policy = make_policy(n_action_steps=2)
    policy.reseed(0)
    chunk = policy.predict_action_chunk(observation())
    policy.reseed(0)
    policy.reset()
    assert np.array_equal(policy.select_action(observation()), chunk[0])
    assert np.array_equal(policy.select_action(observation()), chunk[1])


def test_bad_observations_get_clear_errors():
    policy = make_policy()
    obs = observation()
    with pytest.raises(KeyError, match="task"):
        policy.predict_action_chunk({k: v for k, v in obs.items() if k != TASK})
    with pytest.raises(KeyError, match="observation.images.corner2"):
        policy.predict_action_chunk({k: v for k, v in obs.items() if k != image_key("corner2")})
    with pytest.raises(ValueError, match="HWC"):
        policy.predict_action_chunk(dict(obs, **{image_key("corner2"): np.zeros((3, 32, 32), np.uint8)}))


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    policy = make_policy()
    policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        [CONFIG_FILE, WEIGHTS_FILE, NORMALIZATION_FILE]
    )  # no temporary files left behind
    loaded = VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt", seed=0)
    assert loaded.config == policy.config
    for seed in (0, 1):
        policy.reseed(seed)
        loaded.reseed(seed)
        obs = observation(seed=seed)
        assert np.array_equal(policy.predict_action_chunk(obs), loaded.predict_action_chunk(obs))


def test_frozen_target_is_referenced_not_saved(tmp_path):
    encoder_model = VLAJEPAPolicy(tiny_config())
    save_encoder(encoder_model.student.vision, tmp_path / "encoder.safetensors")
    policy = make_policy(target=TargetConfig(kind="frozen", checkpoint=str(tmp_path / "encoder.safetensors")))
    policy.save_pretrained(tmp_path / "ckpt")
    assert not any(k.startswith("target.") for k in load_file(tmp_path / "ckpt" / WEIGHTS_FILE))
    loaded = VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    for a, b in zip(loaded.target.parameters(), encoder_model.student.vision.parameters(), strict=True):
        assert torch.equal(a, b)

    # the policy acts without the target, so it still loads where the encoder file is not (a robot's server)
    (tmp_path / "encoder.safetensors").unlink()
    moved = VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    assert moved.config == loaded.config  # the reference is kept for a later save
    for policy in (loaded, moved):
        policy.reseed(0)
    assert np.array_equal(loaded.predict_action_chunk(observation()), moved.predict_action_chunk(observation()))


def test_truncated_or_corrupt_weights_name_the_file(tmp_path):
    make_policy().save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(corrupt|truncated)"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    weights.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")


def test_missing_or_broken_config_and_normalization_name_the_file(tmp_path):
    make_policy().save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / NORMALIZATION_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"normalization\.json"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / CONFIG_FILE).write_text('{"model_type": "vla_jepa", "image_size": 32}')
    with pytest.raises(CheckpointError, match=r"config\.json.*missing field"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / CONFIG_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"config\.json.*missing"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")


def test_weights_that_do_not_fit_the_config_name_the_file(tmp_path):
    make_policy().save_pretrained(tmp_path / "ckpt")
    other = make_policy(num_embodied_tokens=3)
    (tmp_path / "other").mkdir()
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "other" / WEIGHTS_FILE).replace(tmp_path / "ckpt" / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*wrong shape"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")


def test_eval_euler_steps_reach_the_checkpoint_policy(tmp_path, capsys):
    from vlajepa.cli import main
    from vlajepa.commands.evaluate import parse_policy
    from vlajepa.eval.policies import build_policy

    make_policy().save_pretrained(tmp_path / "ckpt")
    default = build_policy(parse_policy(f"checkpoint:{tmp_path / 'ckpt'}"), env=None)
    fewer = build_policy(parse_policy(f"checkpoint:{tmp_path / 'ckpt'}", euler_steps=1), env=None)
    assert default.num_inference_steps is None and fewer.num_inference_steps == 1
    for policy in (default, fewer):
        policy.reseed(0)
    obs = observation()
    assert not np.array_equal(default.predict_action_chunk(obs), fewer.predict_action_chunk(obs))
    # bad values and policies that have no Euler steps get an error message, not a traceback
    for argv in (
        ["--policy", "expert", "--euler-steps", "3"],
        ["--policy", f"checkpoint:{tmp_path}", "--euler-steps", "0"],
        ["--policy", "nonsense"],
    ):
        assert main(["eval", *argv, "--tasks", "reach-v3"]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err


def test_noise_scale_zero_gives_deterministic_chunks_and_reaches_the_checkpoint_policy(tmp_path, capsys):
    from vlajepa.cli import main
    from vlajepa.commands.evaluate import parse_policy
    from vlajepa.eval.policies import build_policy

    make_policy().save_pretrained(tmp_path / "ckpt")
    sampled = build_policy(parse_policy(f"checkpoint:{tmp_path / 'ckpt'}"), env=None)
    greedy = build_policy(parse_policy(f"checkpoint:{tmp_path / 'ckpt'}", noise_scale=0.0), env=None)
    assert (sampled.noise_scale, greedy.noise_scale) == (1.0, 0.0)
    obs = observation()
    first, second = greedy.predict_action_chunk(obs), greedy.predict_action_chunk(obs)
    np.testing.assert_array_equal(first, second)  # no noise: the generator's state does not matter
    assert not np.array_equal(sampled.predict_action_chunk(obs), sampled.predict_action_chunk(obs))
    # the zero-noise chunk is the flow integrated from an all-zero start
    batch = greedy.processor.preprocess([obs])
    zero = torch.zeros(1, greedy.config.chunk_size, greedy.config.action_dim)
    expected = greedy.normalizer.unnormalize(ACTION, greedy.predict_action(batch, noise=zero).double().numpy())
    np.testing.assert_allclose(first, expected[0], atol=1e-5)
    with pytest.raises(ValueError, match="noise_scale"):
        VLAJEPAPolicy(greedy.config, greedy.normalizer, noise_scale=1.5)
    for argv in (
        ["--policy", "expert", "--noise-scale", "0"],
        ["--policy", f"checkpoint:{tmp_path}", "--noise-scale", "-1"],
    ):
        assert main(["eval", *argv, "--tasks", "reach-v3"]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err


def test_eval_renders_a_checkpoint_at_its_training_camera_and_resolution(tmp_path, capsys):
    import json

    from vlajepa.cli import main

    pytest.importorskip("vlajepa.envs.metaworld_env")  # through vlajepa.envs: it picks MuJoCo's GL back-end first
    policy = make_policy()
    assert (policy.config.image_size, policy.config.cameras) == (32, ("corner2",))
    policy.save_pretrained(tmp_path / "ckpt")
    common = ["eval", "--policy", f"checkpoint:{tmp_path / 'ckpt'}", "--tasks", "reach-v3", "--episodes", "1",
              "--max-steps", "2", "--workers", "1", "--videos", "0", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--image-size", "48", "--out", str(tmp_path / "explicit")]) == 0
    capsys.readouterr()
    default = json.loads((tmp_path / "default.json").read_text())["config"]
    explicit = json.loads((tmp_path / "explicit.json").read_text())["config"]
    assert (default["image_size"], default["camera"]) == (32, "corner2")
    assert explicit["image_size"] == 48  # an explicit flag still wins


