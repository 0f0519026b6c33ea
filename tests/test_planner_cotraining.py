"""The planner's world model and score trained inside a policy's own run (``vlajepa train --planner``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.synthetic import write_robot_dataset
from helpers.models import TINY_SCORE, TINY_WORLD_MODEL, single_thread, tiny_config
from test_planner import observation
from vlajepa.config import ConfigError
from vlajepa.policies import PlannerPolicy, load_policy
from vlajepa.train import checkpoints as ckpt
from vlajepa.train.config import TrainConfig
from vlajepa.train.metrics import read_metrics
from vlajepa.train.planner import CO_TRAINED_BASE, PLANNER_DIR, diagnose_planner, planner_config_from
from vlajepa.train.trainer import Trainer

POLICY = tiny_config(use_world_model=False)  # BC: the planner's usual base
PLANNER = planner_config_from(
    POLICY, CO_TRAINED_BASE, world_model=TINY_WORLD_MODEL, score=TINY_SCORE, num_candidates=4
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def robot(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cotrain_planner_data")
    return str(write_robot_dataset(root / "robot", lengths=(12, 9, 15, 10, 11, 13, 9, 12, 10, 14)))


def train_config(robot: str, **changes) -> TrainConfig:
    base = TrainConfig(
        robot=robot, steps=4, batch_size=4, warmup_steps=1, checkpoint_every=2, log_every=1, tensorboard=False
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def runs(robot, tmp_path_factory) -> dict[str, Path]:
    """The same BC run with and without a co-trained planner."""
    root = tmp_path_factory.mktemp("cotrain_planner_runs")
    with single_thread():
        Trainer(POLICY, train_config(robot), root / "alone", progress=False).train()
        Trainer(POLICY, train_config(robot), root / "with", planner=PLANNER, progress=False).train()
    return {"alone": root / "alone", "with": root / "with"}


def test_the_policy_trains_exactly_as_it_would_alone(runs):
    alone, together = read_metrics(runs["alone"]), read_metrics(runs["with"])
    assert [r["loss"] for r in together] == [r["loss"] for r in alone]
    assert all(np.isfinite(r["planner/loss"]) and r["planner/loss"] > 0 for r in together)
    assert "planner/loss" not in alone[0]
    last = ckpt.last_checkpoint(runs["with"])
    a, b = load_file(ckpt.last_checkpoint(runs["alone"]) / "model.safetensors"), load_file(last / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_checkpoint_holds_a_planner_on_itself_that_loads_and_plans(runs):
    last = ckpt.last_checkpoint(runs["with"])
    planner = load_policy(last / PLANNER_DIR)
    assert isinstance(planner, PlannerPolicy)
    assert json.loads((last / PLANNER_DIR / "config.json").read_text())["base_policy"] == ".."
    # the base is the checkpoint that holds the planner: the same weights as the policy loaded on its own
    policy = load_policy(last)
    base_state, own_state = planner.base.state_dict(), policy.state_dict()
    assert all(torch.equal(base_state[k], own_state[k]) for k in own_state)
    # the world model and score trained (they differ from a fresh planner's initialization)
    fresh = PlannerPolicy(PLANNER, base=policy)
    trained = planner.checkpoint_state_dict()
    assert any(not torch.equal(v, fresh.checkpoint_state_dict()[k]) for k, v in trained.items())
    stored = load_file(last / PLANNER_DIR / "model.safetensors")
    assert not any(k.startswith(("base.", "world_model.encoder.")) for k in stored)
    plan = planner.plan(observation(3))
    assert plan.candidates.shape == (4, PLANNER.n_action_steps, PLANNER.action_dim) and 0 <= plan.best < 4
    # the training record names the held-out episodes, so the stage's diagnostics run on it
    report = diagnose_planner(last / PLANNER_DIR, windows=8, pairs=4, progress=False)
    assert report["held_out_episodes"] == 1
    step_dirs = sorted(p for p in (runs["with"] / "checkpoints").iterdir() if p.name.isdigit())
    assert all((p / PLANNER_DIR / "config.json").is_file() for p in step_dirs)
    through_link = load_policy(runs["with"] / "checkpoints" / ckpt.LAST / PLANNER_DIR)  # last is a symlink
    assert all(torch.equal(through_link.base.state_dict()[k], v) for k, v in own_state.items())


def test_a_copied_checkpoint_keeps_its_planner_on_itself(runs, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(ckpt.last_checkpoint(runs["with"]), copy)
    weights = load_file(copy / "model.safetensors")  # make the copy's policy differ from the original's
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, copy / "model.safetensors")
    planner = load_policy(copy / PLANNER_DIR)
    own = load_policy(copy).state_dict()
    assert all(torch.equal(planner.base.state_dict()[k], v) for k, v in own.items())


def test_a_resumed_run_continues_the_planner_exactly(robot, runs, tmp_path):
    trainer = Trainer(POLICY, train_config(robot), tmp_path / "run", planner=PLANNER, progress=False)
    trainer.train(until=2)
    resumed = Trainer.resume(tmp_path / "run", progress=False)
    assert resumed.planner is not None
    resumed.train()
    expected = [r["planner/loss"] for r in read_metrics(runs["with"])]
    assert [r["planner/loss"] for r in read_metrics(tmp_path / "run")] == pytest.approx(expected, rel=1e-6)


def test_a_planner_needs_robot_actions_and_the_policys_interface(robot, tmp_path):
    with pytest.raises(ConfigError, match="planner"):
        # world-model pretraining on robot frames without actions (a VLA-JEPA policy): nothing for the planner
        config = train_config(robot, robot_actions=False)
        Trainer(tiny_config(), config, tmp_path / "a", planner=PLANNER, progress=False)
    other = PLANNER.replace(image_size=48)
    with pytest.raises(ConfigError, match="planner.image_size"):
        Trainer(POLICY, train_config(robot), tmp_path / "b", planner=other, progress=False)


def test_the_train_command_co_trains_a_planner(robot, tmp_path, capsys):
    from vlajepa.cli import main

    out = tmp_path / "cli"
    run = ["train", "--method", "bc", "--robot", robot, "--out", str(out), "--config", "tiny", "--steps", "2",
           "--batch-size", "4", "--no-progress", "--planner"]  # fmt: skip
    fields = {"num_candidates": 3, "world_model.encoder.backbone": "vit", "world_model.encoder.patch_size": 8,
              "world_model.encoder.dim": 32, "world_model.encoder.depth": 1, "world_model.encoder.heads": 2,
              "world_model.language.kind": "tiny", "world_model.language.dim": 32,
              "world_model.language.heads": 2}  # fmt: skip
    sets = [arg for name, value in fields.items() for arg in ("--set", f"planner.{name}={value}")]
    assert main([*run, *sets]) == 0
    summary = json.loads(capsys.readouterr().out)
    planner = load_policy(summary["planner"])
    assert isinstance(planner, PlannerPolicy) and planner.config.num_candidates == 3
    assert summary["planner_use_with"] == f"vlajepa eval --planner {summary['planner']}"
    assert main([*run, "--set", "planner.no_such_field=1", "--overwrite"]) == 2
    assert "--set planner.no_such_field: unknown field 'no_such_field'" in capsys.readouterr().err
