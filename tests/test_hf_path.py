"""The paper-scale path from tiny random configs (no download): a Hugging Face VLM student (Qwen3-VL, Qwen2.5-VL,
SmolVLM) with added query tokens and a frozen V-JEPA 2 target. A training step, acting, the leakage rule,
checkpoints, and loading both from local transformers folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.hf import hf_policy, normalizer, tiny_hf_config
from helpers.models import random_batch, single_thread, tiny_config
from vlajepa.config import ConfigError
from vlajepa.constants import future_image_key, image_key
from vlajepa.nn.config import TargetConfig, VJEPA2TargetConfig
from vlajepa.nn.hf_vlm import write_tiny_vlm
from vlajepa.nn.vjepa2 import VJEPA2Target, write_tiny_vjepa2
from vlajepa.policies import load_policy
from vlajepa.policies.vla_jepa import StudentConfig, VLAJEPAConfig, VLAJEPAPolicy
from vlajepa.train.config import TrainConfig
from vlajepa.train.optim import build_optimizer

CAMERAS = ("agentview", "wrist")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


def observation(config, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    obs = {image_key(c): rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for c in config.cameras}
    return {**obs, "observation.state": rng.normal(size=config.state_dim), "task": "open the drawer"}


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl", "smolvlm"])
def test_training_step_moves_every_part_and_outputs_keep_the_student_contract(family):
    config = tiny_hf_config(family, CAMERAS)
    policy = hf_policy(config, perturb=False).train()
    batch = random_batch(config, 2)
    out = policy.encode(batch)
    steps, k, m, d = config.clip_length - 1, config.num_latent_action_tokens, config.num_embodied_tokens, 32
    assert out.latent_action_tokens.shape == (2, steps, k, d) and out.embodied_tokens.shape == (2, m, d)

    optimizer = build_optimizer(policy, TrainConfig(lr=1e-2, robot="x"))
    before = {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}
    loss, logs = policy(batch)
    loss.backward()
    optimizer.step()
    assert np.isfinite(loss.item()) and {"loss/action", "loss/wm"} <= set(logs)
    moved = {name.split(".")[0] + "." + name.split(".")[1] for name, p in policy.named_parameters()
             if name in before and not torch.equal(before[name], p)}  # fmt: skip
    assert {"student.vlm", "student.latent_proj", "student.embodied_proj", "action_head.blocks"} <= moved
    assert any(n.startswith("predictor.") for n in moved)
    assert not any(n.startswith("target.") for n in before)  # the V-JEPA 2 target is frozen


def test_predict_action_chunk_and_the_optimizer_groups():
    config = tiny_hf_config("qwen3_vl", CAMERAS)
    policy = hf_policy(config)
    chunk = policy.predict_action_chunk(observation(config))
    assert chunk.shape == (config.n_action_steps, config.action_dim) and chunk.dtype == np.float32
    groups = policy.get_optim_params()
    assert groups["vision"] and groups["language"] and len(groups["student"]) == 4
    vision = {id(p) for p in policy.student.vlm.model.visual.parameters()}
    assert vision == {id(p) for p in groups["vision"]}


def test_student_outputs_are_bit_identical_when_the_future_changes():
    config = tiny_hf_config("qwen3_vl", CAMERAS)
    policy = hf_policy(config)
    batch = random_batch(config, 2)
    changed = dict(batch)
    for camera in CAMERAS:
        clip = batch[future_image_key(camera)].clone()
        clip[:, 1:] = torch.rand_like(clip[:, 1:])
        changed[future_image_key(camera)] = clip
    noise = torch.randn(2, config.chunk_size, config.action_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = policy.encode(batch), policy.encode(changed)
        actions = [policy.predict_action(x, noise=noise) for x in (batch, changed)]
    assert torch.equal(a.latent_action_tokens, b.latent_action_tokens)
    assert torch.equal(a.embodied_tokens, b.embodied_tokens) and torch.equal(*actions)
    # negative control: the current image is an input, so changing it must change the outputs
    current = dict(batch)
    current[image_key(CAMERAS[1])] = torch.rand_like(batch[image_key(CAMERAS[1])])
    with torch.no_grad():
        assert not torch.equal(policy.encode(current).embodied_tokens, a.embodied_tokens)


@pytest.mark.parametrize("first_changed", [1, 2])
def test_vjepa2_context_latents_ignore_later_frames(first_changed):
    torch.manual_seed(0)
    target = VJEPA2Target(VJEPA2TargetConfig(image_size=32))
    clips = [torch.rand(2, 3, 3, 40, 40) for _ in CAMERAS]
    changed = [clip.clone() for clip in clips]
    for clip in changed:
        clip[:, first_changed:] = torch.rand_like(clip[:, first_changed:])
    before, after = target(clips), target(changed)
    assert before.shape == (2, 3, len(CAMERAS) * 16, 32)
    assert torch.equal(before[:, :first_changed], after[:, :first_changed])  # frames <= t untouched
    assert not torch.equal(before[:, first_changed:], after[:, first_changed:])  # negative control


@pytest.mark.parametrize("family", ["qwen3_vl", "smolvlm"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, family):
    config = tiny_hf_config(family, CAMERAS)
    policy = hf_policy(config)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert isinstance(loaded, VLAJEPAPolicy) and loaded.config == config
    assert not any(k.startswith("target.") for k in loaded.checkpoint_state_dict())  # referenced, not copied
    batch = random_batch(config, 2)
    with torch.no_grad():
        assert torch.equal(policy.encode(batch).embodied_tokens, loaded.encode(batch).embodied_tokens)
        assert torch.equal(policy.target_latents(batch), loaded.target_latents(batch))
    for model in (policy, loaded):
        model.reseed(3)
    np.testing.assert_array_equal(policy.predict_action_chunk(observation(config)),
                                  loaded.predict_action_chunk(observation(config)))  # fmt: skip


def test_local_folders_load_and_checkpoints_do_not_reread_the_vlm(tmp_path):
    pytest.importorskip("peft", reason="LoRA needs the paper extra (peft)")
    vlm_dir = write_tiny_vlm(tmp_path / "vlm", "qwen3_vl")
    vjepa_dir = write_tiny_vjepa2(tmp_path / "vjepa2", image_size=32)
    vlm = {"model_dir": str(vlm_dir), "freeze_vision": True, "lora_rank": 4, "gradient_checkpointing": True}
    config = tiny_hf_config(
        "qwen3_vl", CAMERAS, vlm=vlm,
        target=TargetConfig(kind="vjepa2", vjepa2=VJEPA2TargetConfig(model_dir=str(vjepa_dir), image_size=32)),
    )  # fmt: skip
    policy = hf_policy(config, perturb=False)
    assert not any(p.requires_grad for p in policy.student.vlm.model.visual.parameters())
    lora = [n for n, p in policy.student.vlm.model.named_parameters() if p.requires_grad and "lora_" in n]
    assert lora and not policy.student.vlm.model.language_model.layers[0].mlp.up_proj.base_layer.weight.requires_grad
    optimizer = build_optimizer(policy, TrainConfig(robot="x"))
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in in_optimizer for p in policy.student.vlm.model.visual.parameters())
    assert policy.student.vlm.model.language_model.gradient_checkpointing
    policy.train()
    loss, _ = policy(random_batch(config, 2))
    loss.backward()  # through the checkpointed layers into the LoRA adapters
    assert all(p.grad is not None for n, p in policy.student.vlm.model.named_parameters() if "lora_A" in n)
    policy.eval()

    policy.save_pretrained(tmp_path / "ckpt")
    (vlm_dir / "model.safetensors").unlink()  # the checkpoint holds the VLM: its folder's weights are not read
    loaded = load_policy(tmp_path / "ckpt")
    batch = random_batch(config, 2)
    with torch.no_grad():
        assert torch.equal(policy.encode(batch).latent_action_tokens, loaded.encode(batch).latent_action_tokens)
        assert torch.equal(policy.target_latents(batch), loaded.target_latents(batch))


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="student.use_state"):
        tiny_config(student=StudentConfig(backbone="hf_vlm", use_state=True), target=TargetConfig(kind="vjepa2"))
    with pytest.raises(ConfigError, match="target.kind=ema"):
        tiny_hf_config(target=TargetConfig(kind="ema"))
    with pytest.raises(RuntimeError, match="target.vjepa2.size='vitl' without model_dir"):
        VJEPA2Target(VJEPA2TargetConfig(size="vitl"))
    with pytest.raises(RuntimeError, match="no config.json"):
        VLAJEPAPolicy(tiny_hf_config(vlm={"model_dir": str(tmp_path)}), normalizer(tiny_hf_config()))


def test_paper_preset_counts_parameters_without_weights():
    from vlajepa.policies.sizes import build_without_weights, parameter_counts
    from vlajepa.presets import preset_path

    config = VLAJEPAConfig.from_yaml(preset_path("paper"))
    assert TrainConfig.from_yaml(preset_path("paper")).precision == "bf16"
    _, device = build_without_weights(config)
    counts = parameter_counts(config)
    assert device == "meta"
    assert counts["student.vision"] + counts["student.language"] == 2_127_532_032  # Qwen3-VL-2B's architecture
    assert abs(counts["target"] / 300e6 - 1) < 0.05  # V-JEPA 2 ViT-L encoder, ~300M
    assert counts["total"] == sum(v for k, v in counts.items() if k not in ("trainable", "total"))


def test_info_prints_the_paper_preset_counts(capsys):
    import json

    from vlajepa.cli import EXIT_ERROR
    from vlajepa.cli import main as cli

    assert cli(["info", "--config", "paper", "--set", "model.action_head.layout=self_cross"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"].endswith("paper.yaml") and report["parameters"]["target"] == 303_885_312
    assert report["millions"]["action_head"] == pytest.approx(241.7, abs=0.1)  # the override applied (159.8 without)
    assert cli(["info", "--config", "paper", "--set", "train.steps=3"]) == EXIT_ERROR  # only model fields


def test_hf_path_trains_under_bf16_autocast(tmp_path):
    from benchmarks.synthetic import write_robot_dataset
    from vlajepa.train.trainer import Trainer

    robot = write_robot_dataset(tmp_path / "robot", (10, 12))
    train = TrainConfig(robot=str(robot), steps=2, batch_size=2, warmup_steps=1, log_every=1, tensorboard=False,
                        precision="bf16", latent_cache="memory")  # fmt: skip
    result = Trainer(tiny_hf_config(), train, tmp_path / "run", progress=False).train()
    assert result.step == 2 and all(np.isfinite(result.losses))
    assert isinstance(load_policy(result.checkpoint), VLAJEPAPolicy)


def test_gpu_smoke_script_says_when_there_is_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the smoke script would run")
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_smoke.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
