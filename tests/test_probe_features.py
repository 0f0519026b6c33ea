"""benchmarks/probe_features.py: frozen probes leave the encoder alone and learn; encoders load from every source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import probe_features as probe
from benchmarks.synthetic import save_random_checkpoint
from vlajepa.checkpoint import WEIGHTS_FILE, load_safetensors
from vlajepa.nn.config import VisionConfig
from vlajepa.nn.vision import VisionEncoder
from vlajepa.policies.vla_jepa import VLAJEPAConfig
from vlajepa.presets import preset_path

TINY = preset_path("tiny")



def squares(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images with one bright 4 px square on black, and its (x, y) position scaled to [-1, 1]."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, size, size), dtype=np.uint8)
    where = rng.integers(0, size - 4, (n, 2))
    for image, (x, y) in zip(images, where, strict=True):
        image[:, y : y + 4, x : x + 4] = 255
    target = (where - (size - 4) / 2) / ((size - 4) / 2)
    return torch.from_numpy(images), torch.from_numpy(target).float()


def tiny_encoder(seed: int = 0) -> VisionEncoder:
    torch.manual_seed(seed)
    return VisionEncoder(VisionConfig(patch_size=6, dim=16, depth=1, heads=2, mlp_ratio=2.0), 24).eval()


def fit(probe, encoder, images, target, finetune: bool):
    return probe.train_probe(encoder, images, target, finetune=finetune, steps=150, batch_size=32, lr=3e-3,
                             shift=0, seed=0)


@pytest.mark.parametrize("finetune", [False, True])
def test_the_probe_learns_positions_and_only_fine_tuning_changes_the_encoder(finetune):
    torch.set_num_threads(1)
    images, target = squares(256)
    encoder = tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    predict = fit(probe, encoder, images, target, finetune)
    error = (predict(images) - target).pow(2).mean().item()
    baseline = (target - target.mean(0)).pow(2).mean().item()
    assert error < 0.5 * baseline  # the square's position is read, far better than answering its mean
    changed = any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert changed == finetune


def test_encoders_load_from_a_checkpoint_a_saved_encoder_and_at_random(tmp_path):
    config = VLAJEPAConfig.from_yaml(TINY)
    checkpoint = save_random_checkpoint(tmp_path / "checkpoint", config)
    encoder, vision = probe.build_encoder(str(checkpoint), str(TINY), config.image_size)
    student = {k.removeprefix("student.vision."): v for k, v in load_safetensors(checkpoint / WEIGHTS_FILE).items()
               if k.startswith("student.vision.")}
    assert vision == config.vision and student.keys() == encoder.state_dict().keys()
    assert all(torch.equal(student[k], v) for k, v in encoder.state_dict().items())

    saved = tmp_path / "probe" / "encoder.safetensors"
    probe.save_probed_encoder(encoder, vision, saved, str(checkpoint), "python benchmarks/probe_features.py ...")
    meta = json.loads((saved.parent / "encoder_config.json").read_text())
    assert "simulator positions" in meta["made_by"] and meta["initialized_from"] == str(checkpoint)
    again, again_vision = probe.build_encoder(str(saved), str(TINY), config.image_size)
    assert again_vision == vision
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in again.state_dict().items())

    fresh, fresh_vision = probe.build_encoder("random", str(TINY), config.image_size)
    assert fresh_vision == config.vision and not fresh.training
    with pytest.raises(SystemExit, match="not 'random'"):
        probe.build_encoder(str(tmp_path / "missing.safetensors"), str(TINY), config.image_size)


def test_report_groups_frames_by_task_and_pools_moving_parts():
    rng = np.random.default_rng(0)
    label = np.zeros((40, 9))
    label[:, 0:3] = rng.uniform(-0.1, 0.1, (40, 3))  # obj1 moves; obj2 and the goal never do
    predicted = label.copy()
    predicted[20:, 0] += 0.01  # 1 cm off in x on the second task's frames
    tasks = ["reach-v3"] * 20 + ["push-v3"] * 20
    grouped = probe.by_task(predicted, label, tasks)
    assert {t: len(v["label"]) for t, v in grouped.items()} == {"reach-v3": 20, "push-v3": 20}
    report = probe.report_for(grouped, grouped)
    assert set(report["push-v3"]["parts"]) == {"obj1"}
    assert report["push-v3"]["parts"]["obj1"]["heldout"] == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    entry = {"mode": "frozen", "tasks": report, "pooled": probe.pooled(report)}
    text = probe.markdown({"command": "c", "wall_time_s": 1.0, "steps": 10, "train": "t", "heldout": "h",
                           "stride": 2, "encoders": {"bc": entry}})
    assert "| bc | frozen | 0.5 / 0.0 / 0.0 | 0.5 / 0.0 / 0.0 |" in text
    assert "| push-v3 | 0.3 |" in text  # per-task held-out error: mean over x / y / z of the moving part
