"""The LAPA baseline: NSVQ, the latent action model, the lapa policy's leakage rule, checkpoints, serving and the
CLI recipe (train-lam -> pretrain --method lapa-latent -> train --method lapa)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.synthetic import save_random_checkpoint, write_robot_dataset, write_video_set
from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.config import ConfigError
from vlajepa.constants import OBS_STATE, TASK, future_image_key, image_key
from vlajepa.nn.nsvq import NSVQ
from vlajepa.policies import load_policy
from vlajepa.policies.lapa import LAMConfig, LAPAConfig, LAPAPolicy, LatentActionModel
from vlajepa.policies.lapa.configuration import lapa_from_student_config
from vlajepa.train import checkpoints as ckpt

CAMERA = "corner2"
TINY_LAM = LAMConfig(image_size=32, camera=CAMERA, horizon=2, patch_size=8, dim=32, heads=2, spatial_depth=1,
                     temporal_depth=1, decoder_depth=1, code_dim=8)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Leave the zero-initialised branches of a fresh model, so every input matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.fixture(scope="module")
def lam_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = LatentActionModel(TINY_LAM)
    perturb(model, 0.2)
    return model.save(tmp_path_factory.mktemp("lam") / "lam")


def latent_config(lam_dir: Path, **changes) -> LAPAConfig:
    data = lapa_from_student_config(tiny_config().to_dict(), TINY_LAM, stage="latent", lam_dir=str(lam_dir))
    return LAPAConfig.from_dict(data | changes)


# ---------------------------------------------------------------------------- NSVQ


def test_nsvq_passes_gradients_to_the_encoder_and_gives_codebook_entries_at_inference():
    torch.manual_seed(0)
    encoder, quantizer = torch.nn.Linear(6, 4), NSVQ(num_codes=5, dim=4)
    z = encoder(torch.randn(16, 6))
    quantized = quantizer.train()(z)
    assert not torch.equal(quantized.output, quantizer.codebook[quantized.indices])  # noise substitution
    quantized.output.square().sum().backward()
    assert encoder.weight.grad.abs().sum() > 0  # through z
    assert quantizer.codebook.grad.abs().sum() > 0  # through ||z - q||
    with torch.no_grad():
        inference = quantizer.eval()(z)
    assert torch.equal(inference.output, quantizer.codebook[inference.indices])
    assert torch.equal(inference.indices, quantizer.nearest(z))
    distances = torch.cdist(z, quantizer.codebook)
    assert torch.equal(inference.indices, distances.argmin(1))


def test_dead_codes_are_replaced_by_encoder_outputs_and_then_used():
    torch.manual_seed(0)
    quantizer = NSVQ(num_codes=4, dim=2).train()
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, -60.0], [-70.0, 70.0]]))
    data = torch.randn(64, 2)  # near entry 0 only: the other three are dead
    assert quantizer(data).perplexity.item() == pytest.approx(1.0)
    assert quantizer.dead_codes(0.01).tolist() == [1, 2, 3]
    assert quantizer.replace_dead_codes(0.01) == 3
    assert quantizer.codebook[1:].abs().max() < 10  # moved onto the data
    assert quantizer.usage.sum() == 0  # counts restart
    assert quantizer(data).perplexity > 2.0
    assert quantizer.replace_dead_codes(0.01) == 0  # every entry in use: nothing moves


# ---------------------------------------------------------------------------- latent action model


def test_latent_action_model_codes_see_the_future_frame_and_training_lowers_the_error(lam_dir):
    model = LatentActionModel.load(lam_dir)
    assert not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    first, last = torch.rand(8, 3, 32, 32, generator=g), torch.rand(8, 3, 32, 32, generator=g)
    codes = model.codes(first, last)
    assert codes.shape == (8, 4) and codes.dtype == torch.int64
    assert not torch.equal(codes, model.codes(first, torch.rand(8, 3, 32, 32, generator=g)))
    with torch.no_grad():  # o_t's encoding is causal: it ignores o_{t+H}
        a = model.encode(first, last)[0]
        b = model.encode(first, torch.rand(8, 3, 32, 32, generator=g))[0]
    assert torch.equal(a, b)

    torch.manual_seed(0)
    fresh = LatentActionModel(TINY_LAM).train()
    start = fresh(first, last)
    assert start.loss.item() == pytest.approx(start.copy_loss.item())  # residual decoder starts at copying o_t
    optimizer = torch.optim.Adam(fresh.parameters(), lr=3e-3)
    for _ in range(30):
        out = fresh(first, last)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.8 * start.copy_loss.item()


# ---------------------------------------------------------------------------- the policy


def student_outputs(policy: LAPAPolicy, batch: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = policy.encode(batch)
        noise = torch.randn(len(batch[TASK]), policy.config.chunk_size, policy.config.action_dim,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
        return {
            "latent": out.latent_action_tokens,
            "embodied": out.embodied_tokens,
            "code_logits": policy.code_logits(out),
            "actions": policy.predict_action(batch, noise=noise),
        }


class FutureSeeingLAPA(LAPAPolicy):
    """Negative control: a student that (wrongly) sees o_{t+H} instead of o_t."""

    def encode(self, batch):
        return super().encode({**batch, image_key(CAMERA): batch[future_image_key(CAMERA)][:, 1]})


@pytest.mark.parametrize("policy_class", [LAPAPolicy, FutureSeeingLAPA], ids=["lapa", "negative-control"])
def test_student_ignores_future_frames_while_the_latent_action_codes_follow_them(lam_dir, policy_class):
    torch.manual_seed(0)
    policy = policy_class(latent_config(lam_dir)).eval()
    perturb(policy.student)
    perturb(policy.action_head)
    batch = random_batch(policy.config, batch_size=4)
    changed = dict(batch)
    clip = batch[future_image_key(CAMERA)].clone()
    clip[:, 1:] = torch.rand_like(clip[:, 1:])
    changed[future_image_key(CAMERA)] = clip
    reference, after = student_outputs(policy, batch), student_outputs(policy, changed)
    unchanged = [torch.equal(reference[name], after[name]) for name in reference]
    assert all(unchanged) if policy_class is LAPAPolicy else not any(unchanged)  # the check can fail
    assert not torch.equal(policy.target_codes(batch), policy.target_codes(changed))
    assert policy(batch)[0].item() != policy(changed)[0].item()  # the labels, and so the loss, follow the future


def test_latent_stage_trains_the_student_and_code_head_only(lam_dir):
    policy = LAPAPolicy(latent_config(lam_dir)).train()
    assert not policy.lam.training  # frozen: exact codes, no counting
    loss, logs = policy(random_batch(policy.config, batch_size=3, robot=False))  # a video batch
    loss.backward()
    assert {"loss/codes", "codes/accuracy"} <= set(logs)
    assert policy.code_head[1].weight.grad is not None and policy.student.latent_queries.grad is not None
    assert all(p.grad is None for p in policy.action_head.parameters())
    assert not any(k.startswith("lam.") for k in policy.checkpoint_state_dict())  # referenced, not copied
    action = LAPAPolicy(latent_config(lam_dir, stage="action", lam=None))
    assert action.lam is None and "loss/action" in action(random_batch(action.config))[1]
    with pytest.raises(ValueError, match="video batch"):
        action(random_batch(action.config, robot=False))


def test_the_student_is_vla_jepas_at_the_same_sizes(lam_dir):
    from vlajepa.policies.sizes import parameter_counts

    lapa, vla_jepa = parameter_counts(latent_config(lam_dir)), parameter_counts(tiny_config())
    for part in ("student.vision", "student.language", "student.rest", "action_head"):
        assert lapa[part] == vla_jepa[part], part
    assert "predictor" not in lapa and lapa["code_head"] > 0


def test_config_errors_name_the_field(lam_dir):
    with pytest.raises(ConfigError, match="clip_length=3"):
        latent_config(lam_dir, clip_length=3)
    with pytest.raises(ConfigError, match="lam: the latent stage needs"):
        latent_config(lam_dir, lam=None)
    with pytest.raises(ConfigError, match="patch_size=7 does not divide image_size=32"):
        LAMConfig(image_size=32, patch_size=7)
    with pytest.raises(ConfigError, match="num_tokens=4 does not match the policy's num_latent_action_tokens=2"):
        LAPAPolicy(latent_config(lam_dir, num_latent_action_tokens=2))
    with pytest.raises(ConfigError, match="horizon=2 does not match the policy's frame_stride=3"):
        LAPAPolicy(latent_config(lam_dir, frame_stride=3))


def _observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"observation.images.{CAMERA}": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        TASK: "open the drawer",
    }


def test_checkpoint_loads_through_load_policy_and_serves(lam_dir, tmp_path, caplog):
    from vlajepa.serve import RemotePolicy, ServerThread, load_served_policy

    config = latent_config(lam_dir)
    saved = save_random_checkpoint(tmp_path / "checkpoint", config)
    loaded = load_policy(saved)
    assert isinstance(loaded, LAPAPolicy) and loaded.config == config and loaded.lam is not None
    observations = [_observation(i) for i in range(2)]
    loaded.reseed(3)
    expected = [loaded.predict_action_chunk(o) for o in observations]

    served = load_served_policy(saved)
    assert served.spec.model["name"] == "LAPAPolicy" and served.spec.chunk_length == 4
    with ServerThread(served.policy, served.spec) as server, RemotePolicy(server.url) as remote:
        remote.reseed(3)
        for observation, chunk in zip(observations, expected, strict=True):
            np.testing.assert_array_equal(remote.predict_action_chunk(observation), chunk)

    moved = tmp_path / "moved"  # a robot's machine without the latent action model: acting does not need it
    shutil.copytree(lam_dir, moved)
    shutil.rmtree(lam_dir)
    try:
        with caplog.at_level(logging.WARNING):
            without = load_policy(saved)
        assert without.lam is None and "latent action model" in caplog.text
        without.reseed(3)
        np.testing.assert_array_equal(without.predict_action_chunk(observations[0]), expected[0])
    finally:
        shutil.copytree(moved, lam_dir)


# ---------------------------------------------------------------------------- CLI recipe


def cli(*argv: str) -> int:
    from vlajepa.cli import main

    return main(list(argv))


def test_cli_recipe_train_lam_then_latent_pretraining_then_action_fine_tuning(tmp_path, capsys):
    robot = str(write_robot_dataset(tmp_path / "robot", (12, 9)))
    video = str(write_video_set(tmp_path / "video", (10,)))
    lam = tmp_path / "lam"
    assert cli("train-lam", "--robot", robot, "--video", video, "--out", str(lam), "--config", "tiny", "--steps", "4",
               "--batch-size", "2", "--set", "train.log_every=2", "--set", "train.replace_every=2",
               "--no-progress") == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert {"loss", "copy_loss", "perplexity", "dead_codes"} <= set(summary)
    lines = [json.loads(line) for line in (lam / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4] and lines[0]["codes_replaced"] >= 0
    assert LatentActionModel.load(lam).config.horizon == 4  # the tiny preset's chunk size

    common = ("--config", "tiny", "--steps", "2", "--batch-size", "2", "--no-progress",
              "--set", "train.tensorboard=false")  # fmt: skip
    assert cli("pretrain", "--method", "lapa-latent", "--robot", robot, "--video", video, "--out",
               str(tmp_path / "x"), *common) == 2  # fmt: skip
    assert "needs --lam" in capsys.readouterr().err
    latent = tmp_path / "latent"
    assert cli("pretrain", "--method", "lapa-latent", "--lam", str(lam), "--robot", robot, "--video", video,
               "--out", str(latent), "--mix", "1:1", "--batches-per-step", "2", *common) == 0  # fmt: skip
    pre = ckpt.last_checkpoint(latent)
    config = json.loads((pre / "config.json").read_text())
    assert config["type"] == "lapa" and config["stage"] == "latent" and config["lam"] == str(lam.resolve())
    assert config["student"] == tiny_config().to_dict()["student"]  # the same student as VLA-JEPA's preset
    capsys.readouterr()

    fine = tmp_path / "fine"
    assert cli("train", "--method", "lapa", "--init-from", str(pre), "--robot", robot, "--out", str(fine),
               *common) == 0  # fmt: skip
    policy = load_policy(ckpt.last_checkpoint(fine))
    assert isinstance(policy, LAPAPolicy) and policy.config.stage == "action" and policy.lam is None
    capsys.readouterr()
    assert cli("train", "--method", "lapa", "--robot", robot, "--target", "ema", "--out", str(tmp_path / "y"),
               *common) == 2  # fmt: skip
    assert "has none" in capsys.readouterr().err
