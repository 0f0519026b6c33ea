"""The pretrained EfficientNet-Lite0 backbone: the shipped weights load strictly and reproduce a recorded output,
frozen parts neither train nor enter checkpoints, and the cached features the student reads are the encoder's own
output for the current frame (never a later one's)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.checkpoint import WEIGHTS_FILE
from vlajepa.config import ConfigError, PolicyConfig
from vlajepa.constants import FUTURE_LATENTS, future_image_key, image_key
from vlajepa.data.latent_cache import build_latent_cache
from vlajepa.data.windows import RobotWindows
from vlajepa.nn import efficientnet
from vlajepa.nn.config import TargetConfig, VisionConfig
from vlajepa.nn.efficientnet import EfficientNetLite0, PretrainedVisionEncoder, WeightsError, load_pretrained
from vlajepa.policies import load_policy
from vlajepa.policies.vla_jepa import VLAJEPAPolicy

pytest.importorskip(efficientnet.MODULE)

PRETRAINED = VisionConfig(backbone="efficientnet_lite0", feature_stride=16, freeze="all")
FROZEN_PRETRAINED_TARGET = TargetConfig(kind="frozen")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def pretrained_config(**changes):
    return tiny_config(vision=PRETRAINED, target=FROZEN_PRETRAINED_TARGET, **changes)


def fixed_images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_the_shipped_weights_load_strictly_and_reproduce_a_recorded_output():
    model = EfficientNetLite0()
    load_pretrained(model)  # the full classifier: every key of the file, nothing else (strict)
    model.eval()
    mean, std = torch.tensor(efficientnet.IMAGENET_MEAN), torch.tensor(efficientnet.IMAGENET_STD)
    with torch.no_grad():
        logits = model((fixed_images() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    # recorded when the module was written (torch 2.13.0, CPU)
    torch.testing.assert_close(logits[0, :4], torch.tensor([-0.9059286, 0.9112844, -0.3902138, -2.6628654]),
                               atol=1e-4, rtol=1e-4)
    assert logits.sum().item() == pytest.approx(-122.23193, abs=1e-2)
    encoder = PretrainedVisionEncoder(64, feature_stride=16, freeze="all")
    with torch.no_grad():
        tokens = encoder(fixed_images())  # ImageNet normalization happens inside
    assert tokens.shape == (2, 16, 112) and encoder.dim == 112 and encoder.num_patches == 16
    assert tokens.sum().item() == pytest.approx(-436.8661, abs=1e-2)
    assert PretrainedVisionEncoder(64, feature_stride=8).dim == 40


def test_a_different_weights_file_is_refused(monkeypatch):
    monkeypatch.setattr(efficientnet, "WEIGHTS_SHA256", "0" * 64)
    efficientnet._verified_state_dict.cache_clear()
    try:
        with pytest.raises(WeightsError, match="SHA-256"):
            load_pretrained(EfficientNetLite0())
    finally:
        efficientnet._verified_state_dict.cache_clear()


def test_freeze_modes_choose_what_trains_and_frozen_batch_norm_keeps_its_statistics():
    assert not any(m.training for m in PretrainedVisionEncoder(32).modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen = PretrainedVisionEncoder(32, freeze="all").train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    early = PretrainedVisionEncoder(32, freeze="early").train()
    assert not early.backbone._conv_stem.weight.requires_grad
    assert not any(p.requires_grad for p in early.backbone._blocks[4].parameters())
    assert all(p.requires_grad for p in early.backbone._blocks[5].parameters())
    assert early.backbone._blocks[5]._bn1.training and not early.backbone._blocks[4]._bn1.training
    assert all(p.requires_grad for p in PretrainedVisionEncoder(32, freeze="none").parameters())


def test_config_checks_and_migration_of_configs_saved_before_backbones():
    with pytest.raises(ConfigError, match="feature_stride=12"):
        tiny_config(vision=dataclasses.replace(PRETRAINED, feature_stride=12))
    with pytest.raises(ConfigError, match="only a pretrained backbone can be frozen"):
        tiny_config(vision=dataclasses.replace(tiny_config().vision, freeze="all"))
    saved = tiny_config().to_json()
    saved["config_version"] = 2
    for field in ("backbone", "feature_stride", "freeze"):
        del saved["vision"][field]
    assert PolicyConfig.from_json(saved) == tiny_config()


def test_a_frozen_pretrained_encoder_is_neither_trained_nor_copied_into_checkpoints(tmp_path):
    policy = VLAJEPAPolicy(pretrained_config())
    trainable = {id(p) for group in policy.get_optim_params().values() for p in group}
    assert not trainable & {id(p) for p in policy.student.vision.parameters()}
    assert not trainable & {id(p) for p in policy.target.parameters()}
    policy.save_pretrained(tmp_path)
    keys = load_file(str(tmp_path / WEIGHTS_FILE))
    assert not any(k.startswith(("student.vision.", "target.")) for k in keys)
    reference = {"package": efficientnet.PACKAGE, "sha256": efficientnet.WEIGHTS_SHA256}
    assert policy.frozen_references()["vision"] == reference
    loaded = load_policy(tmp_path)  # rebuilt from the package, checked by its hash
    for a, b in zip(loaded.student.vision.parameters(), policy.student.vision.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("use_world_model", [True, False], ids=["vla-jepa", "bc"])
def test_the_student_reads_cached_features_of_the_current_frame_only(use_world_model):
    policy = VLAJEPAPolicy(pretrained_config(use_world_model=use_world_model)).eval()
    assert policy.config.reads_cached_features
    encoder = policy.frozen_target()
    assert encoder is not None and encoder.kind == "frozen"
    batch = random_batch(policy.config, batch_size=2)
    clips = [batch[future_image_key(camera)] for camera in policy.config.cameras]
    cached = {**batch, FUTURE_LATENTS: encoder(clips)}
    with torch.no_grad():
        from_pixels, from_cache = policy.encode(batch), policy.encode(cached)
        torch.testing.assert_close(from_cache.embodied_tokens, from_pixels.embodied_tokens, atol=1e-4, rtol=1e-4)
        later = cached[FUTURE_LATENTS].clone()
        later[:, 1:] = torch.randn_like(later[:, 1:])  # other future frames: the student must not notice
        changed = policy.encode({**cached, FUTURE_LATENTS: later})
    assert torch.equal(changed.embodied_tokens, from_cache.embodied_tokens)
    assert torch.equal(changed.latent_action_tokens, from_cache.latent_action_tokens)
    # a student that trains its own encoder never reads the cache
    assert not VLAJEPAPolicy(tiny_config(target=TargetConfig(kind="frozen"))).config.reads_cached_features


def test_the_feature_cache_hits_and_is_invalidated_by_resolution_stride_and_data(tmp_path):
    from benchmarks.synthetic import write_robot_dataset

    root = write_robot_dataset(tmp_path / "robot", (6, 5), size=32)
    config = pretrained_config(use_world_model=False)
    policy = VLAJEPAPolicy(config)

    def build(cfg, data=root):
        encoder = VLAJEPAPolicy(cfg).frozen_target()
        return build_latent_cache(encoder, RobotWindows(data, cfg), name="robot", directory=tmp_path / "cache")

    first = build(config)
    assert build(config).path == first.path  # hit: reused, not rebuilt
    wider = build(dataclasses.replace(config, image_size=48))
    finer = build(dataclasses.replace(config, vision=dataclasses.replace(PRETRAINED, feature_stride=8)))
    other = build(config, write_robot_dataset(tmp_path / "other", (6, 5), size=32, seed=3))
    assert len({first.path, wider.path, finer.path, other.path}) == 4  # each a miss
    windows = RobotWindows(root, config)
    frame = windows.frames([0])[0]  # (1, 3, S, S)
    with torch.no_grad():
        expected = policy.student.vision(frame)[0]
    torch.testing.assert_close(torch.from_numpy(first.latents[0].copy()), expected, atol=1e-4, rtol=1e-4)
    meta = json.loads((first.path / "meta.json").read_text())
    assert meta["dataset"]["image_size"] == 32


def test_trainer_caches_the_frozen_encoder_and_refuses_pixel_augmentation_with_it(tmp_path):
    from benchmarks.synthetic import write_robot_dataset
    from vlajepa.train import TrainConfig, Trainer

    root = write_robot_dataset(tmp_path / "robot", (8, 7), size=32)
    config = pretrained_config(use_world_model=False)
    train = TrainConfig(robot=str(root), steps=2, batch_size=4, tensorboard=False, latent_cache="disk")
    trainer = Trainer(config, train, tmp_path / "run", progress=False)
    assert trainer.caches and trainer.train().step == 2
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in trainer.policy.student.vision.parameters()}
    last = tmp_path / "run" / "checkpoints" / "last"
    state = json.loads((last / "training_state.json").read_text())
    assert state["frozen"]["vision"]["sha256"] == efficientnet.WEIGHTS_SHA256
    assert set(load_file(str(last / WEIGHTS_FILE))) == set(trainer.policy.checkpoint_state_dict())
    assert not any(k.startswith("student.vision.") for k in trainer.policy.checkpoint_state_dict())
    assert isinstance(load_policy(last), VLAJEPAPolicy)  # the checkpoint of a cached run loads and acts
    with pytest.raises(ConfigError, match="augment_shift"):
        Trainer(config, train.replace(augment_shift=2), tmp_path / "aug", progress=False)
    assert image_key("corner2") in RobotWindows(root, config)[0]


def test_train_asks_a_frozen_target_for_weights_unless_it_is_a_pretrained_backbone():
    import argparse
    from pathlib import Path

    from vlajepa.commands.train import _check_frozen_target

    args = argparse.Namespace(target=None)
    _check_frozen_target(pretrained_config().to_dict(), args, Path("preset.yaml"))  # the package has the weights
    with pytest.raises(SystemExit, match="has no weights"):
        _check_frozen_target(tiny_config(target=TargetConfig(kind="frozen")).to_dict(), args, Path("preset.yaml"))


def test_the_default_preset_caches_a_frozen_pretrained_backbone_and_trains_without_pixel_shifts():
    from vlajepa.policies.vla_jepa import VLAJEPAConfig
    from vlajepa.presets import preset_path
    from vlajepa.train import TrainConfig

    config = VLAJEPAConfig.from_yaml(preset_path("default"))
    train = TrainConfig.from_yaml(preset_path("default"))
    assert config.vision.backbone == "efficientnet_lite0" and config.reads_cached_features
    assert train.augment_shift == 0 and train.instruction_dropout == 0.3
