"""The trainer on tiny synthetic data: schedule stepping, frozen parts, exact resume, NaN stop, latent cache, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.synthetic import write_robot_dataset, write_video_set
from helpers.models import single_thread, tiny_config
from vlajepa.checkpoint import CheckpointError
from vlajepa.config import ConfigError
from vlajepa.constants import FUTURE_FRAME_IDS, future_image_key
from vlajepa.data.latent_cache import build_latent_cache, cache_key
from vlajepa.data.windows import RobotWindows, VideoWindows, collate_windows
from vlajepa.nn.config import TargetConfig
from vlajepa.policies.vla_jepa import VLAJEPAPolicy
from vlajepa.train import checkpoints as ckpt
from vlajepa.train.config import LearningRateScales, TrainConfig
from vlajepa.train.metrics import read_metrics
from vlajepa.train.optim import lr_factor
from vlajepa.train.trainer import NonFiniteLossError, Trainer

FROZEN = TargetConfig(kind="frozen", seed=5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("trainer_data")
    return {
        "robot": str(write_robot_dataset(root / "robot", (12, 9, 15))),
        "video": str(write_video_set(root / "video", (10, 14))),
    }


def train_config(data: dict[str, str], **changes) -> TrainConfig:
    base = TrainConfig(
        robot=data["robot"],
        video=data["video"],
        steps=6,
        batch_size=3,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        tensorboard=False,
    )
    return base.replace(**changes)


def losses(out: Path) -> list[float]:
    return [record["loss"] for record in read_metrics(out)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kill_after(trainer: Trainer, steps: int) -> None:
    """Train until ``steps`` optimizer steps are done, then die as a killed process would (no final checkpoint)."""
    original = trainer.train_step

    def killed():
        if trainer.step == steps:
            raise KeyboardInterrupt
        return original()

    trainer.train_step = killed
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


# ---------------------------------------------------------------------------- schedule and optimizer


@pytest.mark.parametrize("batches_per_step", [1, 2], ids=["alternating", "robot+video per step"])
def test_scheduler_steps_once_per_optimizer_step(data, tmp_path, batches_per_step):
    config = train_config(data, steps=4, batches_per_step=batches_per_step, checkpoint_every=10)
    trainer = Trainer(tiny_config(), config, tmp_path, progress=False)
    calls = []
    original_step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: calls.append(1) or original_step(*a, **k)
    trainer.train()
    assert len(calls) == 4
    assert trainer.scheduler.last_epoch == 4
    records = read_metrics(tmp_path)
    for step, record in enumerate(records):  # the lr each step used, whatever mix of batches it had
        assert record["lr/student"] == pytest.approx(config.lr * lr_factor(step, config))
    if batches_per_step == 2:
        assert all(r["batches/robot"] == 1 and r["batches/video"] == 1 for r in records)
    else:
        assert [("batches/robot" in r, "batches/video" in r) for r in records] == [(True, False), (False, True)] * 2


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(step, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(100, config) == pytest.approx(0.1)


def test_frozen_parts_are_neither_optimized_nor_saved(data, tmp_path):
    config = train_config(data, steps=2, lr_scales=LearningRateScales(language=0.0))
    trainer = Trainer(tiny_config(target=FROZEN), config, tmp_path, progress=False)
    model = trainer.policy
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    frozen = list(model.target.parameters()) + list(model.student.language.parameters())
    assert not optimized & {id(p) for p in frozen}
    language_before = {k: v.clone() for k, v in model.student.language.state_dict().items()}
    trainer.train()
    assert all(torch.equal(v, model.student.language.state_dict()[k]) for k, v in language_before.items())

    last = ckpt.last_checkpoint(tmp_path)
    weights = load_file(str(last / "model.safetensors"))
    assert not any(k.startswith("target.") for k in weights)  # referenced by config.json, not copied
    optimizer_state = torch.load(last / ckpt.OPTIMIZER_FILE, weights_only=True)
    assert sum(len(group["params"]) for group in optimizer_state["param_groups"]) == len(optimized)
    state = json.loads((last / ckpt.TRAINING_STATE_FILE).read_text())
    assert state["frozen"] == {"frozen_target": {"checkpoint": None, "seed": 5}}
    policy = VLAJEPAPolicy.from_pretrained(last)  # the checkpoint is a loadable policy; the target is rebuilt
    for name, value in VLAJEPAPolicy(tiny_config(target=FROZEN)).target.state_dict().items():
        assert torch.equal(policy.target.state_dict()[name], value)


# ---------------------------------------------------------------------------- resume and failures


def test_killed_run_resumes_with_the_uninterrupted_loss_sequence(data, tmp_path):
    config = train_config(data, steps=8, keep_checkpoints=2, num_workers=1)
    model_config = tiny_config()
    Trainer(model_config, config, tmp_path / "a", progress=False).train()

    kill_after(Trainer(model_config, config, tmp_path / "b", progress=False), 4)
    assert ckpt.last_checkpoint(tmp_path / "b").name == ckpt.step_name(3)  # step 4 was never saved
    assert len(read_metrics(tmp_path / "b")) == 4

    resumed = Trainer.resume(tmp_path / "b", progress=False)
    assert resumed.step == 3
    resumed.train()
    assert losses(tmp_path / "b") == losses(tmp_path / "a")  # bitwise: steps 4..8 replayed exactly
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == list(range(1, 9))
    final_a = load_file(str(ckpt.last_checkpoint(tmp_path / "a") / "model.safetensors"))
    final_b = load_file(str(ckpt.last_checkpoint(tmp_path / "b") / "model.safetensors"))
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    kept = sorted(p.name for p in ckpt.checkpoints_root(tmp_path / "b").iterdir() if p.name.isdigit())
    assert kept == [ckpt.step_name(6), ckpt.step_name(8)]
    assert not list(ckpt.checkpoints_root(tmp_path / "b").glob(".tmp-*"))


def test_resume_refuses_changed_configs(data, tmp_path):
    config = train_config(data, steps=3)
    Trainer(tiny_config(), config, tmp_path, progress=False).train()
    with pytest.raises(ConfigError, match="training config"):
        Trainer(tiny_config(), config.replace(lr=1e-3), tmp_path, resume=True, progress=False)
    with pytest.raises(ConfigError, match="model config"):
        Trainer(tiny_config(wm_weight=0.5), config, tmp_path, resume=True, progress=False)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(), train_config(data, steps=8), tmp_path, progress=False)
    forward = VLAJEPAPolicy.forward

    def poisoned(model, batch):
        loss, logs = forward(model, batch)
        return (loss * float("nan"), logs) if trainer.step == 4 else (loss, logs)

    monkeypatch.setattr(VLAJEPAPolicy, "forward", poisoned)
    last = ckpt.checkpoints_root(tmp_path) / ckpt.step_name(3)
    with pytest.raises(NonFiniteLossError, match=r"step 5: the loss is nan") as error:
        trainer.train()
    assert str(last) in str(error.value)
    assert ckpt.last_checkpoint(tmp_path) == last.resolve()
    before = {p.name: digest(p) for p in last.iterdir()}
    assert before == {p.name: digest(p) for p in ckpt.last_checkpoint(tmp_path).iterdir()}
    assert sorted(p.name for p in ckpt.checkpoints_root(tmp_path).iterdir()) == [ckpt.step_name(3), "last"]


def test_damaged_checkpoint_files_are_named_on_resume(data, tmp_path):
    Trainer(tiny_config(), train_config(data, steps=2), tmp_path, progress=False).train()
    optimizer_file = ckpt.last_checkpoint(tmp_path) / ckpt.OPTIMIZER_FILE
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(optimizer_file)):
        Trainer.resume(tmp_path, steps=4, progress=False)
    with pytest.raises(ConfigError, match="cannot change"):
        Trainer.resume(tmp_path, lr=1.0)


def test_bf16_autocast_trains(data, tmp_path):
    result = Trainer(tiny_config(), train_config(data, steps=2, precision="bf16"), tmp_path, progress=False).train()
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))


def test_recipe_errors_are_clear(data, tmp_path):
    with pytest.raises(ConfigError, match="no training data"):
        Trainer(tiny_config(), TrainConfig(), tmp_path)
    with pytest.raises(ConfigError, match="trains on actions only"):
        Trainer(tiny_config(use_world_model=False), train_config(data), tmp_path)


# ---------------------------------------------------------------------------- latent cache


@pytest.mark.parametrize(
    "captions", [("reach to the goal position",), ("reach to the goal position", "reach the goal")]
)
def test_training_warns_when_a_task_never_has_its_canonical_instruction(tmp_path, captions, capsys):
    robot = write_robot_dataset(tmp_path / "robot", (8, 8), tasks=captions)
    code = cli(
        "train", "--method", "bc", "--robot", str(robot), "--out", str(tmp_path / "run"), "--config", "tiny",
        "--steps", "1", "--batch-size", "2", "--set", "train.tensorboard=false", "--no-progress",
    )  # fmt: skip
    assert code == 0
    messages = [line for line in capsys.readouterr().err.splitlines() if "canonical" in line]
    if "reach the goal" in captions:
        assert not messages
    else:  # evaluation would instruct reach with a sentence the data never shows
        assert len(messages) == 1 and "reach-v3" in messages[0] and str(robot) in messages[0]


def test_latent_cache_equals_the_target_latents_computed_on_the_fly(data, tmp_path):
    model = VLAJEPAPolicy(tiny_config(target=FROZEN)).eval()
    for windows in (RobotWindows(data["robot"], model.config), VideoWindows(data["video"], model.config)):
        cache = build_latent_cache(model.target, windows, name="x", directory=tmp_path, batch_size=5)
        batch = collate_windows([windows[i] for i in range(len(windows))])  # every window, padded ones included
        expected = model.target([batch[future_image_key("corner2")]])
        assert torch.allclose(cache.lookup(batch[FUTURE_FRAME_IDS]), expected, atol=1e-6)
        reused = build_latent_cache(model.target, windows, name="x", directory=tmp_path)
        assert reused.path == cache.path and isinstance(reused.latents, type(cache.latents))
    other_target = VLAJEPAPolicy(tiny_config(target=TargetConfig(kind="frozen", seed=6))).target
    windows = RobotWindows(data["robot"], model.config)
    assert cache_key(other_target, windows, "float32")[0] != cache_key(model.target, windows, "float32")[0]
    assert cache_key(model.target, windows, "float16")[0] != cache_key(model.target, windows, "float32")[0]


def test_training_with_the_cache_matches_training_without(data, tmp_path):
    model_config = tiny_config(target=FROZEN)
    results = {}
    for mode in ("off", "disk"):
        config = train_config(data, steps=3, latent_cache=mode)
        results[mode] = Trainer(model_config, config, tmp_path / mode, progress=False).train().losses
    assert results["disk"] == pytest.approx(results["off"], abs=1e-6)
    assert len(list((tmp_path / "disk" / "latent_cache").iterdir())) == 2  # robot and video


# ---------------------------------------------------------------------------- CLI and recipes


def cli(*argv: str) -> int:
    from vlajepa.cli import main

    return main(list(argv))


def test_cli_pretrain_then_fine_tune_then_resume(data, tmp_path, capsys):
    common = ("--config", "tiny", "--steps", "2", "--batch-size", "2", "--no-progress")
    common += ("--set", "train.tensorboard=false")
    pretrain_data = ("--video", data["video"], "--robot", data["robot"])
    assert cli("pretrain", *pretrain_data, "--out", str(tmp_path / "pre"), *common) == 0
    pre = ckpt.last_checkpoint(tmp_path / "pre")
    saved = TrainConfig.load_json(pre / ckpt.TRAIN_CONFIG_FILE)
    assert saved.robot_actions is False and saved.steps == 2
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["checkpoint"] == str(tmp_path / "pre" / "checkpoints" / ckpt.step_name(2))

    fine = tmp_path / "fine"
    assert cli("train", "--init-from", str(pre), "--robot", data["robot"], "--out", str(fine), *common) == 0
    assert TrainConfig.load_json(ckpt.last_checkpoint(fine) / ckpt.TRAIN_CONFIG_FILE).init_from == str(pre)
    capsys.readouterr()
    assert cli("train", "--robot", data["robot"], "--out", str(fine), *common) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli("train", "--out", str(fine), "--resume", "--steps", "3", "--no-progress") == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    policy = VLAJEPAPolicy.from_pretrained(ckpt.last_checkpoint(fine))
    assert policy.normalizer.features  # actions can be un-normalized


def test_cli_bc_method_and_overrides(data, tmp_path, capsys):
    out = tmp_path / "bc"
    code = cli(
        "train", "--method", "bc", "--robot", data["robot"], "--out", str(out), "--config", "tiny", "--steps", "1",
        "--set", "model.chunk_size=6", "--set", "train.tensorboard=false", "--no-progress",
    )  # fmt: skip
    assert code == 0
    config = json.loads((ckpt.last_checkpoint(out) / "config.json").read_text())
    assert config["use_world_model"] is False and config["chunk_size"] == 6
    capsys.readouterr()
    assert cli("train", "--robot", data["robot"], "--out", str(tmp_path / "x"), "--set", "model.nope=1") == 2
    assert "unknown field" in capsys.readouterr().err
    assert cli("train", "--method", "bc", "--robot", data["robot"], "--video", data["video"], "--out",
               str(tmp_path / "y"), "--config", "tiny", "--no-progress") == 2
    assert "action-free video needs a policy that learns from future frames" in capsys.readouterr().err


def test_cli_help_explains_the_recipes(capsys):
    assert cli("train", "--help") == 0
    text = capsys.readouterr().out
    for option in ("--robot", "--video", "--init-from", "--resume", "--method", "--set", "accelerate launch"):
        assert option in text
    assert cli("pretrain", "--help") == 0
    text = capsys.readouterr().out
    assert "--robot-actions" in text and "--video" in text and "train --init-from" in text


def test_cli_frozen_target_needs_weights_or_an_explicit_random_choice(data, tmp_path, capsys):
    common = ("--robot", data["robot"], "--config", "tiny", "--steps", "1", "--batch-size", "2", "--no-progress",
              "--set", "train.tensorboard=false")
    # a frozen target with no weights is refused
    assert cli("train", *common, "--out", str(tmp_path / "a"), "--set", "model.target.kind=frozen") == 2
    assert "pretrain-encoder" in capsys.readouterr().err
    weights = tmp_path / "x.safetensors"
    weights.touch()
    contradiction = ("--target", "ema", "--target-checkpoint", str(weights))
    assert cli("train", *common, "--out", str(tmp_path / "b"), *contradiction) == 2
    assert "contradicts" in capsys.readouterr().err
    assert cli("train", *common, "--out", str(tmp_path / "c"), "--target", "random") == 0
    target = json.loads((ckpt.last_checkpoint(tmp_path / "c") / "config.json").read_text())["target"]
    assert target["kind"] == "frozen" and target["checkpoint"] is None
    # BC has no target, so the frozen preset needs no weights there
    frozen_preset = ("--set", "model.target.kind=frozen")
    assert cli("train", *common, "--out", str(tmp_path / "d"), "--method", "bc", *frozen_preset) == 0


def test_init_vision_starts_the_student_and_an_ema_target_from_encoder_weights(data, tmp_path):
    from vlajepa.nn.target import TargetEncoderError, save_encoder
    from vlajepa.nn.vision import VisionEncoder

    config = tiny_config()  # EMA target
    torch.manual_seed(123)
    encoder = VisionEncoder(config.vision, config.image_size)
    save_encoder(encoder, tmp_path / "encoder.safetensors")
    trainer = Trainer(config, train_config(data, steps=1, init_vision=str(tmp_path / "encoder.safetensors")),
                      tmp_path / "run", progress=False)
    for name, value in encoder.state_dict().items():
        assert torch.equal(trainer.policy.student.vision.state_dict()[name], value)
        assert torch.equal(trainer.policy.target.encoder.state_dict()[name], value)
    scratch = Trainer(config, train_config(data, steps=1), tmp_path / "scratch", progress=False)
    assert not torch.equal(next(scratch.policy.student.vision.parameters()), next(encoder.parameters()))
    with pytest.raises(TargetEncoderError, match="missing.safetensors: init_vision"):
        Trainer(config, train_config(data, steps=1, init_vision=str(tmp_path / "missing.safetensors")),
                tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match="init_from and init_vision"):
        train_config(data, init_from="x", init_vision="y")


def test_cli_names_missing_encoder_weights_without_a_traceback(data, tmp_path, capsys):
    common = ("--robot", data["robot"], "--config", "tiny", "--steps", "1", "--no-progress")
    missing = str(tmp_path / "missing.safetensors")
    assert cli("train", "--method", "bc", "--init-vision", missing, "--out", str(tmp_path / "a"), *common) == 2
    err = capsys.readouterr().err
    assert f"argument --init-vision: {missing}: no such encoder weights file" in err and "Traceback" not in err
    assert cli("train", "--target-checkpoint", missing, "--out", str(tmp_path / "b"), *common) == 2
    assert f"argument --target-checkpoint: {missing}: no such" in capsys.readouterr().err


# ---------------------------------------------------------------------------- weight averaging


def test_weight_average_is_what_checkpoints_serve_and_resume_is_exact(data, tmp_path):
    """With ``ema_weights``, model.safetensors holds the running average of every step's weights (checked against
    one computed here), the iterate sits beside it, and a killed run resumes to the same losses and both files."""
    from vlajepa.train.weight_ema import RAW_WEIGHTS_FILE, ema_decay

    config = train_config(data, steps=7, ema_weights=0.9)
    trainer = Trainer(tiny_config(), config, tmp_path / "a", progress=False)
    names = list(trainer.weight_ema.params)
    expected = {n: trainer.weight_ema.params[n].detach().clone() for n in names}
    original = trainer.train_step

    def step_and_average():
        metrics = original()
        decay = ema_decay(trainer.step, 0.9)
        for n in names:
            expected[n] = decay * expected[n] + (1 - decay) * trainer.weight_ema.params[n].detach()
        return metrics

    trainer.train_step = step_and_average
    trainer.train()
    last = ckpt.last_checkpoint(tmp_path / "a")
    served, raw = load_file(str(last / "model.safetensors")), load_file(str(last / RAW_WEIGHTS_FILE))
    assert all(torch.allclose(served[n], expected[n], atol=1e-6) for n in names)
    assert any(not torch.equal(served[n], raw[n]) for n in names)
    assert all(torch.equal(raw[n], trainer.weight_ema.params[n].detach()) for n in names)  # the model kept its iterate
    policy = VLAJEPAPolicy.from_pretrained(last)
    assert torch.equal(dict(policy.named_parameters())[names[0]], served[names[0]])

    kill_after(Trainer(tiny_config(), config, tmp_path / "b", progress=False), 4)
    Trainer.resume(tmp_path / "b", progress=False).train()
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    for name in ("model.safetensors", RAW_WEIGHTS_FILE):
        a = load_file(str(last / name))
        b = load_file(str(ckpt.last_checkpoint(tmp_path / "b") / name))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_weight_average_decay_and_errors(data, tmp_path):
    from vlajepa.train.weight_ema import RAW_WEIGHTS_FILE, ema_decay

    decays = [ema_decay(step, 0.9999) for step in (1, 10, 100, 1000, 10**7)]
    assert decays == sorted(decays) and decays[0] < 0.5 and decays[-1] == 0.9999
    with pytest.raises(ConfigError, match="ema_weights"):
        TrainConfig(ema_weights=1.0)
    Trainer(tiny_config(), train_config(data, steps=2, ema_weights=0.99), tmp_path, progress=False).train()
    raw = ckpt.last_checkpoint(tmp_path) / RAW_WEIGHTS_FILE
    raw.write_bytes(raw.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=str(raw)):
        Trainer.resume(tmp_path, steps=4, progress=False)
    raw.unlink()
    with pytest.raises(CheckpointError, match=f"{raw}: missing"):
        Trainer.resume(tmp_path, steps=4, progress=False)
