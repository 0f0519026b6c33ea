"""benchmarks/probe_world_model.py: replacement tokens come from other windows, and a predictor that ignores its
conditions shows no gain."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmarks import probe_world_model as probe
from benchmarks.synthetic import write_robot_dataset
from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.data.windows import RobotWindows
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


def test_derangement_stays_within_groups_and_moves_every_member():
    groups = ["a", "b", "a", "c", "b", "a", "b"]
    source, alone = probe.derangement(groups, torch.Generator().manual_seed(0))
    assert sorted(source.tolist()) == list(range(len(groups)))  # a permutation
    assert alone == 1  # "c" has no partner
    for i, j in enumerate(source.tolist()):
        assert groups[i] == groups[j]
        assert (i == j) == (groups[i] == "c")


def test_a_predictor_blind_to_its_conditions_gains_nothing():
    torch.manual_seed(0)
    with single_thread():
        model = VLAJEPAPolicy(tiny_config(clip_length=4)).eval()
        batch = random_batch(model.config, batch_size=6, robot=False)
        result = probe.batch_errors(model, batch, torch.Generator().manual_seed(0))
        errors = result["errors"]
        assert errors["copy"].shape == (6, 3) and result["valid"].all()
        # the first imagined step is teacher forcing's first prediction
        torch.testing.assert_close(errors["rollout/own"][:, 0], errors["teacher/own"][:, 0])
        assert not torch.equal(errors["teacher/own"], errors["teacher/other"])  # a live predictor reads them

        torch.nn.init.zeros_(model.predictor.condition_in.weight)  # conditions now carry nothing
        blind = probe.batch_errors(model, batch, torch.Generator().manual_seed(0))["errors"]
    modes = ("teacher", "rollout")  # no "hidden": this predictor has no mask token
    assert {name.split("/")[0] for name in blind} == {"copy", *modes}
    for mode in modes:
        for condition in probe.CONDITIONS:
            torch.testing.assert_close(blind[f"{mode}/{condition}"], blind[f"{mode}/own"])
    means = {name: value.mean(dim=0).tolist() for name, value in blind.items()}
    means["copy"] = [value + 1.0 for value in means["teacher/own"]]  # copying is worse than any prediction here
    assert probe.gains(means) == {mode: [0.0, 0.0, 0.0] for mode in modes}


def test_a_predictor_trained_with_context_dropout_is_also_probed_with_its_context_hidden():
    predictor = dataclasses.replace(tiny_config().predictor, context_dropout=0.5)
    with single_thread():
        model = VLAJEPAPolicy(tiny_config(clip_length=4, predictor=predictor)).eval()
        torch.nn.init.normal_(model.predictor.mask_token)
        batch = random_batch(model.config, batch_size=4, robot=False)
        errors = probe.batch_errors(model, batch, torch.Generator().manual_seed(0))["errors"]
    assert {f"hidden/{c}" for c in probe.CONDITIONS} <= set(errors)
    assert not torch.equal(errors["hidden/own"], errors["teacher/own"])  # the context is really hidden


def test_probe_windows_reports_every_condition_and_step(tmp_path):
    root = write_robot_dataset(tmp_path / "robot", lengths=(12, 9, 15))
    with single_thread():
        model = VLAJEPAPolicy(tiny_config()).eval()
        windows = RobotWindows(root, model.config, with_actions=False)
        result = probe.probe_windows(model, windows, stride=2, batch_size=8, seed=0, desc="test")
    assert result["windows"] == len(range(0, 36, 2))
    steps = model.config.clip_length - 1
    modes = ("teacher", "rollout")
    assert set(result["error"]) == {"copy"} | {f"{m}/{c}" for m in modes for c in probe.CONDITIONS}
    assert all(len(values) == steps for values in result["error"].values())
    # windows near an episode's end predict padded frames, which are not counted
    assert result["steps_counted"][0] >= result["steps_counted"][-1] and result["steps_counted"][-1] < 18
    text = probe.markdown({"command": "c", "wall_time_s": 1.0, "loss": "l1",
                           "checkpoints": {"tiny": {"robot": {**result, "gain": probe.gains(result["error"])}}}})
    assert text.count("| tiny | robot |") == 2 * steps


def test_linear_baselines_find_which_input_explains_the_change():
    rng = np.random.default_rng(0)
    n = 400
    samples = {"z": rng.normal(size=(n, 6)), "actions": rng.normal(size=(n, 3)), "episode": np.arange(n) // 10}
    samples["change"] = samples["actions"] @ rng.normal(size=(3, 5))  # the actions decide the change
    result = probe.linear_baselines(samples, "l1")
    error = result["error"]
    assert result["windows"] == {"fit": 320, "test": 80} and result["episodes_held_out"] == 8
    assert error["actions"] < 0.05 * error["mean_change"] and error["z_t+actions"] < 0.05 * error["mean_change"]
    assert error["z_t"] > 0.9 * error["mean_change"]  # z_t carries nothing about it
    samples["change"] = samples["z"] @ rng.normal(size=(6, 5))  # now the current latents decide it
    error = probe.linear_baselines(samples, "mse")["error"]
    assert error["z_t"] < 0.01 * error["mean_change"] and error["actions"] > 0.8 * error["mean_change"]
