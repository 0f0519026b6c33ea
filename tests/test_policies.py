"""The policy registry, the saved config's type and version, the migration of old checkpoints, and the one
input/output pipeline."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import vlajepa
from helpers.models import single_thread, tiny_config
from vlajepa.checkpoint import CONFIG_FILE, CheckpointError
from vlajepa.config import CONFIG_VERSION, ConfigError, PolicyConfig, migrate_config, policy_config_class
from vlajepa.constants import ACTION, OBS_STATE, TASK, image_key
from vlajepa.normalize import Normalizer
from vlajepa.policies import (
    PreTrainedPolicy,
    load_policy,
    load_policy_config,
    make_policy,
    policy_class,
    registered_policies,
)
from vlajepa.policies.processing import Processor
from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
OLD_CHECKPOINTS = ("v1_tiny_cotrain", "v1_tiny_bc")  # written by main at 18e956b, before config versions


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def fixed_observation() -> dict:
    """The observation the fixtures' expected actions were computed on."""
    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    return {image_key("corner2"): image, OBS_STATE: np.array([0.1, 0.2, 0.3, 0.4], np.float32), TASK: "open the drawer"}


# ---------------------------------------------------------------------------- registry


def test_vla_jepa_is_registered_and_importable_from_the_top_level():
    assert "vla_jepa" in registered_policies()
    assert policy_class("vla_jepa") is VLAJEPAPolicy and policy_config_class("vla_jepa") is VLAJEPAConfig
    assert vlajepa.VLAJEPAPolicy is VLAJEPAPolicy and vlajepa.load_policy is load_policy
    assert isinstance(make_policy(tiny_config()), VLAJEPAPolicy)
    with pytest.raises(ConfigError, match="unknown policy type 'nope'.*vla_jepa"):
        policy_class("nope")


def test_a_new_policy_registers_by_its_config_type_and_loads_through_the_same_call(tmp_path):
    @dataclass(frozen=True)
    class ConstantConfig(PolicyConfig):
        type = "constant_for_test"
        value: float = 0.5

    class ConstantPolicy(PreTrainedPolicy):
        config_class = ConstantConfig

        def __init__(self, config, normalizer=None, **kwargs):
            super().__init__(config, normalizer, **kwargs)
            self.bias = torch.nn.Parameter(torch.full((config.action_dim,), config.value))

        def sample_actions(self, batch):
            return self.bias.expand(len(batch[TASK]), self.config.chunk_size, -1)

    config = ConstantConfig(cameras=("corner2",), image_size=32, chunk_size=2, n_action_steps=2, value=0.25)
    stats = {ACTION: {"min": [0.0] * 4, "max": [2.0] * 4}, OBS_STATE: {"min": [0.0] * 4, "max": [1.0] * 4}}
    policy = make_policy(config, Normalizer.from_stats(stats, {ACTION: "min_max", OBS_STATE: "min_max"}))
    assert isinstance(policy, ConstantPolicy)
    policy.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    assert (saved["type"], saved["config_version"]) == ("constant_for_test", CONFIG_VERSION)
    loaded = load_policy(tmp_path / "ckpt")  # no knowledge of the class at the call site
    assert type(loaded) is ConstantPolicy and loaded.config == config
    np.testing.assert_allclose(loaded.predict_action_chunk(fixed_observation()), np.full((2, 4), 1.25))
    with pytest.raises(CheckpointError, match="ConstantPolicy checkpoint, not a VLAJEPAPolicy"):
        VLAJEPAPolicy.from_pretrained(tmp_path / "ckpt")


# ---------------------------------------------------------------------------- saved configs and migration


def test_saved_config_carries_type_and_version(tmp_path):
    VLAJEPAPolicy(tiny_config()).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert saved["type"] == "vla_jepa" and saved["config_version"] == CONFIG_VERSION == 5
    assert load_policy_config(tmp_path) == tiny_config()


@pytest.mark.parametrize("name", OLD_CHECKPOINTS)
def test_a_checkpoint_written_by_the_previous_main_loads_and_acts_as_it_did(name):
    expected = json.loads((FIXTURES / "expected_actions.json").read_text())[name]
    policy = load_policy(FIXTURES / name, noise_scale=0.0)
    assert isinstance(policy, VLAJEPAPolicy)
    np.testing.assert_array_equal(policy.predict_action_chunk(fixed_observation()), np.array(expected, np.float32))


def test_migration_fills_fields_added_later_and_drops_removed_options_that_were_off():
    old = json.loads((FIXTURES / "v1_tiny_cotrain" / CONFIG_FILE).read_text())
    assert "config_version" not in old and old["model_type"] == "vla_jepa"
    for section, key in (("predictor", "latent_pool"), ("predictor", "residual"), ("predictor", "context_dropout"),
                         ("action_head", "loss_samples")):
        old[section].pop(key)  # a config saved before these fields existed
    migrated = migrate_config(old, "model")
    assert migrated["type"] == "vla_jepa" and "model_type" not in migrated and "environment_state_dim" not in migrated
    config = PolicyConfig.from_json(old)
    assert config.predictor.latent_pool == 1 and not config.predictor.residual
    assert config.predictor.context_dropout == 0.0 and config.action_head.loss_samples == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("environment_state_dim", 9), ("act_on_environment_state", True), ("student.keypoints", 8)],
)
def test_migration_refuses_a_checkpoint_that_used_a_removed_experimental_option(tmp_path, field, value):
    directory = tmp_path / "old"
    shutil.copytree(FIXTURES / "v1_tiny_bc", directory)
    data = json.loads((directory / CONFIG_FILE).read_text())
    *parents, key = field.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    (directory / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"config\.json.*'{field}'.*removed from the library"):
        load_policy(directory)


def test_configs_from_a_newer_version_or_without_a_known_type_are_refused():
    data = tiny_config().to_json()
    with pytest.raises(ConfigError, match="written by a newer vlajepa"):
        PolicyConfig.from_json({**data, "config_version": CONFIG_VERSION + 1})
    with pytest.raises(ConfigError, match="unknown policy type 'lapa_v9'"):
        PolicyConfig.from_json({**data, "type": "lapa_v9"})
    with pytest.raises(ConfigError, match="unknown field"):
        PolicyConfig.from_json({**data, "environment_state_dim": 0})  # removed fields only migrate from version 1


def test_load_policy_names_a_missing_or_incomplete_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json: missing; not a checkpoint directory"):
        load_policy(tmp_path)


# ---------------------------------------------------------------------------- processing


def test_processor_resizes_normalizes_and_unnormalizes_in_one_place():
    config = tiny_config()
    stats = {
        OBS_STATE: {"mean": [1.0, 2.0, 3.0, 4.0], "std": [2.0, 2.0, 2.0, 2.0]},
        ACTION: {"min": [-2.0] * 4, "max": [2.0] * 4},
    }
    processor = Processor(config, Normalizer.from_stats(stats, {OBS_STATE: "mean_std", ACTION: "min_max"}))
    observation = fixed_observation()
    big = {**observation, image_key("corner2"): np.full((64, 48, 3), 255, np.uint8)}
    batch = processor.preprocess([observation, big])
    assert batch[image_key("corner2")].shape == (2, 3, 32, 32) and batch[TASK] == ["open the drawer"] * 2
    assert torch.allclose(batch[image_key("corner2")][1], torch.ones(3, 32, 32))
    np.testing.assert_allclose(batch[OBS_STATE][0].numpy(), (np.array([0.1, 0.2, 0.3, 0.4]) - [1, 2, 3, 4]) / 2)
    out = processor.postprocess(torch.tensor([[[-1.0, 0.0, 1.0, 0.5]]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[-2.0, 0.0, 2.0, 1.0]]])
    with pytest.raises(ValueError, match="HWC RGB"):
        processor.preprocess([{**observation, image_key("corner2"): np.zeros((32, 32), np.uint8)}])
    with pytest.raises(KeyError, match="observation.images.corner2"):
        processor.preprocess([{OBS_STATE: observation[OBS_STATE], TASK: "x"}])
    with pytest.raises(ValueError, match=r"observation.state has shape \(3,\)"):
        processor.preprocess([{**observation, OBS_STATE: np.zeros(3)}])


def test_configs_of_every_earlier_version_load_with_the_defaults_of_the_fields_added_since():
    """The migration's defaults are the dataclasses' own: a config saved before a field existed loads as today's
    default config (version 3 lacked the VLM student and V-JEPA 2 target; version 2 also the vision backbone)."""
    saved = tiny_config().to_json()
    v3 = {**saved, "config_version": 3, "student": dict(saved["student"]), "target": dict(saved["target"])}
    del v3["student"]["backbone"], v3["student"]["hf_vlm"], v3["target"]["vjepa2"]
    assert PolicyConfig.from_json(v3) == tiny_config()
    v2 = {**v3, "config_version": 2, "vision": dict(saved["vision"])}
    for field in ("backbone", "feature_stride", "freeze"):
        del v2["vision"][field]
    assert PolicyConfig.from_json(v2) == tiny_config()
