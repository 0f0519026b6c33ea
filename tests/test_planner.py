"""World-model action selection: the planner policy, its training stage and its leakage rule (tiny models)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmarks.synthetic import save_random_checkpoint, write_robot_dataset
from helpers.models import TINY_SCORE, TINY_WORLD_MODEL, random_batch, single_thread, tiny_config
from vlajepa.checkpoint import CheckpointError
from vlajepa.config import ConfigError
from vlajepa.constants import ACTION, FUTURE_IS_PAD, FUTURE_LATENTS, FUTURE_VALUE, OBS_STATE, TASK, image_key
from vlajepa.nn.config import VisionConfig
from vlajepa.policies import PlannerPolicy, load_policy
from vlajepa.policies.planning import PlannerConfig
from vlajepa.train.config import TrainConfig
from vlajepa.train.planner import PlannerTrainConfig, diagnose_planner, planner_config_for, train_planner


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("base") / "bc", tiny_config(use_world_model=False))


def tiny_planner_config(base: Path, **changes) -> PlannerConfig:
    return planner_config_for(
        base, **{"world_model": TINY_WORLD_MODEL, "score": TINY_SCORE, "num_candidates": 6} | changes
    )


def observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        image_key("corner2"): rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        TASK: "open the drawer",
    }


def test_the_planner_executes_the_argmax_of_its_score(base_checkpoint):
    """A stub world model that 'imagines' each candidate's first action and a stub score that reads it: the
    executed chunk must be the candidate with the largest first action component."""
    policy = PlannerPolicy(tiny_planner_config(base_checkpoint))

    def imagine(first, actions, instruction):
        imagined = torch.zeros(len(actions), 1, *first.shape[1:])
        imagined[:, 0, 0, 0] = actions[:, 0, 0]
        return imagined

    class ReadFirstComponent(torch.nn.Module):
        def forward(self, latents, instruction):
            return latents[:, 0, 0]

    policy.world_model.imagine = imagine
    policy.score = ReadFirstComponent()
    batch = random_batch(tiny_config(), 3)
    policy.reseed(0)
    candidates, scores = policy.plan_batch(batch)
    policy.reseed(0)
    chosen = policy.sample_actions(batch)
    best = candidates[:, :, 0, 0].argmax(dim=1)
    assert len(set(best.tolist())) > 1 or best[0] != 0  # the stub picks different candidates, not always the first
    torch.testing.assert_close(scores, candidates[:, :, 0, 0])
    torch.testing.assert_close(chosen, candidates[torch.arange(3), best])


def test_batched_imagination_equals_per_candidate_imagination(base_checkpoint):
    policy = PlannerPolicy(tiny_planner_config(base_checkpoint)).eval()
    torch.manual_seed(0)
    b, n = 2, 5
    current = torch.randn(b, policy.world_model.tokens_per_frame, policy.world_model.latent_dim)
    instruction = policy.world_model.instruction(["open the drawer", "press the button"])
    candidates = torch.randn(b, n, 4, 4)
    batched = policy.evaluate_candidates(current, instruction, candidates)
    one_by_one = torch.stack(
        [
            torch.cat(
                [
                    policy.evaluate_candidates(
                        current[i : i + 1], instruction[i : i + 1], candidates[i : i + 1, k : k + 1]
                    )
                    for k in range(n)
                ],
                dim=1,
            )[0]
            for i in range(b)
        ]
    )
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-5)
    assert batched.std() > 0  # the candidates are told apart


def test_candidates_see_only_the_current_observation(base_checkpoint):
    """The leakage rule: the proposal and the imagination read the current frame, state and instruction only."""
    policy = PlannerPolicy(tiny_planner_config(base_checkpoint)).eval()
    batch = random_batch(tiny_config(), 2)
    policy.reseed(3)
    reference = policy.plan_batch(batch)
    future = dict(batch)
    for key in [k for k in batch if k.startswith("future")]:
        future[key] = torch.rand_like(batch[key].float()) if batch[key].dtype != torch.bool else ~batch[key]
    future[ACTION] = torch.randn_like(batch[ACTION])
    policy.reseed(3)
    for got, want in zip(policy.plan_batch(future), reference, strict=True):
        torch.testing.assert_close(got, want)
    changed = dict(batch, **{image_key("corner2"): torch.rand_like(batch[image_key("corner2")])})
    policy.reseed(3)
    assert not torch.allclose(policy.plan_batch(changed)[1], reference[1])  # the current frame does matter


def test_world_model_predictions_do_not_read_later_frames(base_checkpoint):
    policy = PlannerPolicy(tiny_planner_config(base_checkpoint)).eval()
    torch.manual_seed(0)
    latents = torch.randn(2, 2, policy.world_model.tokens_per_frame, policy.world_model.latent_dim)
    actions = torch.randn(2, 4, 4)
    instruction = policy.world_model.instruction(["a", "b"])
    first = policy.world_model(latents, actions, instruction)[:, 0]
    later = latents.clone()
    later[:, 1] = torch.randn_like(later[:, 1])
    torch.testing.assert_close(policy.world_model(later, actions, instruction)[:, 0], first)
    shifted = actions.clone()
    shifted[:, 2:] += 1.0  # actions of the second step
    torch.testing.assert_close(policy.world_model(latents, shifted, instruction)[:, 0], first)


def test_bad_planner_configs_name_the_field(base_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="num_candidates=0"):
        tiny_planner_config(base_checkpoint, num_candidates=0)
    with pytest.raises(ConfigError, match="n_action_steps=3 must be a multiple of frame_stride=2"):
        tiny_planner_config(base_checkpoint, n_action_steps=3)
    with pytest.raises(ConfigError, match="base_policy"):
        PlannerConfig(world_model=TINY_WORLD_MODEL)
    with pytest.raises(ConfigError, match="image_size=64 differs from the base policy's 32"):
        PlannerPolicy(tiny_planner_config(base_checkpoint, image_size=64))
    with pytest.raises(CheckpointError, match="base_policy: the planner's base policy does not load"):
        PlannerPolicy(tiny_planner_config(base_checkpoint).replace(base_policy=str(tmp_path / "gone")))
    with pytest.raises(ConfigError, match="unknown planner field 'candidates'"):
        tiny_planner_config(base_checkpoint, candidates=4)


@pytest.fixture(scope="module")
def trained_planner(base_checkpoint, tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("planner")
    data = write_robot_dataset(tmp_path / "robot", lengths=(12, 9, 15, 10, 11, 13, 9, 12, 10, 14))
    train_config = PlannerTrainConfig(
        robot=(str(data),), optim=TrainConfig(steps=6, batch_size=8, warmup_steps=1, log_every=2), holdout_every=5
    )
    with single_thread():
        result = train_planner(tiny_planner_config(base_checkpoint), train_config, tmp_path / "out", progress=False)
    assert np.isfinite(result.final_logs["loss"])
    return result.checkpoint


def test_trained_planner_saves_references_loads_and_diagnoses(trained_planner):
    assert (trained_planner / "metrics.jsonl").is_file() and (trained_planner / "planner_training.json").is_file()
    saved = set(load_file(trained_planner / "model.safetensors"))
    assert saved and not any(k.startswith(("base.", "world_model.encoder.")) for k in saved)  # references only

    policy = load_policy(trained_planner)
    assert isinstance(policy, PlannerPolicy) and policy.config.num_candidates == 6
    assert float(policy.world_model.latent_std.mean()) != 1.0  # the training data's statistics came along
    plan = policy.plan(observation(0))
    assert plan.candidates.shape == (6, 4, 4) and plan.scores.shape == (6,) and plan.best == int(plan.scores.argmax())
    assert load_policy(trained_planner, num_candidates=3).plan(observation(0)).candidates.shape == (3, 4, 4)

    report = diagnose_planner(trained_planner, windows=8, pairs=4, progress=False)
    assert report["held_out_episodes"] == 2
    assert {row["horizon_steps"] for row in report["world_model"]["horizons"]} == {1, 2}


def test_a_served_planner_round_trips_like_in_process(trained_planner):
    from vlajepa.serve import RemotePolicy, ServerThread, load_served_policy

    policy = load_policy(trained_planner)
    policy.reseed(5)
    expected = [policy.predict_action_chunk(observation(i)) for i in range(2)]
    loaded = load_served_policy(trained_planner)
    with ServerThread(loaded.policy, loaded.spec) as server, RemotePolicy(server.url) as remote:
        remote.reseed(5)
        for i, want in enumerate(expected):
            np.testing.assert_array_equal(remote.predict_action_chunk(observation(i)), want)


def test_eval_cli_runs_a_planner(trained_planner, tmp_path, capsys):
    from vlajepa.cli import main

    out = tmp_path / "res"
    args = ["eval", "--planner", str(trained_planner), "--candidates", "3", "--tasks", "reach", "--episodes", "1"]
    args += ["--max-steps", "8", "--workers", "1", "--videos", "0", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["rows"][0]["method"] == "planner" and report["rows"][0]["episodes"] == 1
    assert report["policy"]["num_candidates"] == 3
    assert main(["eval", "--policy", "expert", "--candidates", "3"]) == 2
    assert "apply to --planner only" in capsys.readouterr().err


def test_rollout_data_without_success_is_refused(base_checkpoint, tmp_path):
    data = write_robot_dataset(tmp_path / "robot", lengths=(8, 9))
    train_config = PlannerTrainConfig(rollouts=(str(data),), optim=TrainConfig(steps=1, batch_size=2))
    with pytest.raises(ConfigError, match="next.success"):
        train_planner(tiny_planner_config(base_checkpoint), train_config, tmp_path / "p", progress=False)


def test_forward_trains_world_model_and_score(base_checkpoint):
    policy = PlannerPolicy(tiny_planner_config(base_checkpoint)).train()
    n, d = policy.world_model.tokens_per_frame, policy.world_model.latent_dim
    batch = {
        FUTURE_LATENTS: torch.randn(4, 3, n, d),
        ACTION: torch.randn(4, 4, 4),
        FUTURE_IS_PAD: torch.tensor([[False, False, True]] * 4),
        FUTURE_VALUE: torch.rand(4, 3),
        TASK: ["a", "b", "c", "d"],
    }
    loss, logs = policy(batch)
    loss.backward()
    assert {"loss/wm", "loss/wm_rollout", "loss/score", "loss/score_imagined"} <= set(logs)
    groups = policy.get_optim_params()
    assert all(p.grad is not None for p in groups["score"]) and groups["world_model"]
    assert all(p.grad is None for p in policy.base.parameters())  # the base policy never trains here


def test_a_base_on_the_same_frozen_encoder_reads_the_planners_tokens(tmp_path):
    """BC on the frozen ImageNet encoder: the planner hands it its own tokens of the frame (one encoder pass, not
    two), and the candidates are exactly those the base computes from the image itself."""
    base_config = tiny_config(
        use_world_model=False, vision=VisionConfig(backbone="efficientnet_lite0", freeze="all"), image_size=32
    )
    base = save_random_checkpoint(tmp_path / "bc", base_config)
    policy = PlannerPolicy(
        planner_config_for(
            base,
            world_model=dataclasses.replace(
                TINY_WORLD_MODEL, encoder=VisionConfig(backbone="efficientnet_lite0", freeze="all")
            ),
            score=TINY_SCORE,
            num_candidates=4,
        )
    ).eval()
    assert policy._shares_encoder
    batch = random_batch(base_config, 2)
    policy.reseed(1)
    shared = policy.plan_batch(batch)
    policy._shares_encoder = False
    policy.reseed(1)
    separate = policy.plan_batch(batch)
    for got, want in zip(shared, separate, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_score_frame_rates_one_image_like_the_batch_path(trained_planner):
    policy = load_policy(trained_planner)
    obs = observation(2)
    batch = policy.processor.preprocess([obs])
    with torch.no_grad():
        latents = policy.world_model.encode([batch[image_key("corner2")]])
        want = torch.sigmoid(policy.score(latents, policy.world_model.instruction([obs[TASK]])))[0]
    assert policy.score_frame(obs[image_key("corner2")], obs[TASK]) == pytest.approx(float(want), abs=1e-6)
