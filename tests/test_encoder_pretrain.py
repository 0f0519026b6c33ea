"""``vlajepa pretrain-encoder``: masked latent prediction learns, and its encoder loads as a frozen target."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.synthetic import write_video_set
from helpers.models import single_thread, tiny_config
from vlajepa.commands import pretrain_encoder as command
from vlajepa.nn.config import TargetConfig
from vlajepa.policies.vla_jepa import VLAJEPAPolicy
from vlajepa.train.config import TrainConfig
from vlajepa.train.encoder_pretrain import EncoderPretrainConfig, block_masks, complement, pretrain_encoder
from vlajepa.train.optim import build_optimizer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def test_masks_have_a_fixed_size_and_the_complement_is_disjoint():
    hidden = block_masks(5, 4, 9, blocks=2, block_scale=0.25, generator=torch.Generator().manual_seed(0))
    visible = complement(hidden, 16)
    assert hidden.shape == (5, 9) and visible.shape == (5, 7)
    for h, v in zip(hidden.tolist(), visible.tolist(), strict=True):
        assert sorted(h + v) == list(range(16))


def test_loss_decreases_and_the_encoder_loads_as_a_frozen_target(tmp_path):
    videos = write_video_set(tmp_path / "video", (12, 12, 12))
    model_config = tiny_config()
    config = EncoderPretrainConfig(
        image_size=model_config.image_size,
        vision=model_config.vision,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
        steps=60,
        batch_size=16,
        lr=2e-3,
        warmup_steps=5,
        frame_stride=1,
        log_every=10,
    )
    result = pretrain_encoder(config, videos, tmp_path / "encoder")
    assert result.frames == 36 and len(result.losses) == 60
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    records = [json.loads(line) for line in (tmp_path / "encoder" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["target_std"] > 0.5 * records[0]["target_std"]  # the loss fell without a collapse
    snippet = json.loads((tmp_path / "encoder" / "encoder_config.json").read_text())["target"]
    assert snippet["checkpoint"] == str(result.encoder_path)

    target = TargetConfig(kind="frozen", checkpoint=str(result.encoder_path))
    model = VLAJEPAPolicy(tiny_config(target=target))
    weights = load_file(str(result.encoder_path))
    for name, value in model.target.encoder.state_dict().items():
        assert torch.equal(value, weights[name]), name
    optimizer = build_optimizer(model, TrainConfig())
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.target.parameters()}


def test_cli_writes_a_loadable_encoder(tmp_path, capsys):
    videos = write_video_set(tmp_path / "video", (8,))
    out = tmp_path / "enc"
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    argv = ["pretrain-encoder", "--video", str(videos), "--out", str(out), "--config", "tiny", "--steps", "3"]
    args = parser.parse_args([*argv, "--batch-size", "4"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and (out / "encoder.safetensors").is_file()
    # the default preset's encoder is the packaged, pretrained EfficientNet-Lite0: nothing to pretrain
    args = parser.parse_args(["pretrain-encoder", "--video", str(videos), "--out", str(tmp_path / "no"),
                              "--config", "default"])
    with pytest.raises(SystemExit, match="pretrained efficientnet_lite0.*--config vit"):
        args.func(args)
    assert not (tmp_path / "no").exists()
