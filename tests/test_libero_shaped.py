"""LIBERO-shaped data end to end on the paper-scale path: a LeRobot v3 fixture with two cameras (agentview +
wrist), an 8-D state and a 7-D action, written by the project's writer; `vlajepa train --config paper` with tiny
networks; the checkpoint acting on the dataset's own observations (offline); and the same checkpoint served."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.synthetic import LIBERO_CAMERAS, write_libero_dataset
from helpers.models import single_thread
from vlajepa.cli import main as cli
from vlajepa.constants import ACTION, OBS_STATE, TASK, image_key
from vlajepa.data.lerobot import LeRobotDataset, LeRobotDatasetMetadata
from vlajepa.policies import load_policy
from vlajepa.serve import RemotePolicy, ServerThread, load_served_policy

TINY = [  # the paper preset's structure with tiny random networks and 32 px images
    "model.image_size=32", "model.student.dim=32", "model.student.hf_vlm.size=tiny",
    "model.target.vjepa2.size=tiny", "model.target.vjepa2.image_size=32",
    "model.predictor.dim=32", "model.predictor.depth=1", "model.predictor.heads=2",
    "model.action_head.dim=32", "model.action_head.depth=1", "model.action_head.heads=2",
    "train.precision=fp32", "train.warmup_steps=1", "train.tensorboard=false",
]  # fmt: skip


@pytest.mark.slow
def test_libero_shaped_data_trains_acts_offline_and_serves(tmp_path):
    data = write_libero_dataset(tmp_path / "libero", (12, 10, 14))
    meta = LeRobotDatasetMetadata(data)
    assert meta.camera_keys == [image_key(c) for c in LIBERO_CAMERAS]
    assert meta.shapes[OBS_STATE] == (8,) and meta.shapes[ACTION] == (7,)

    out = tmp_path / "run"
    overrides = [arg for item in TINY for arg in ("--set", item)]
    with single_thread():
        status = cli(["train", "--config", "paper", "--robot", str(data), "--out", str(out), "--steps", "2",
                      "--batch-size", "2", "--checkpoint-every", "2", "--threads", "1", *overrides])  # fmt: skip
    assert status == 0
    checkpoint = out / "checkpoints" / "last"
    policy = load_policy(checkpoint)
    config = policy.config
    assert config.cameras == LIBERO_CAMERAS and (config.state_dim, config.action_dim, config.chunk_size) == (8, 7, 7)
    assert config.student.backbone == "hf_vlm" and config.target.kind == "vjepa2"

    # offline: the checkpoint acts on the dataset's own observations
    dataset = LeRobotDataset(data)
    observations = []
    for index in (0, 5, 20):
        item = dataset[index]
        obs = {image_key(c): (item[image_key(c)].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
               for c in LIBERO_CAMERAS}  # uint8 HWC, as cameras give them  # fmt: skip
        observations.append({**obs, OBS_STATE: item[OBS_STATE].numpy(), TASK: item[TASK]})
    policy.reseed(0)
    chunks = [policy.predict_action_chunk(obs) for obs in observations]
    assert all(chunk.shape == (7, 7) and np.isfinite(chunk).all() for chunk in chunks)
    recorded = [dataset[i][ACTION].numpy() for i in (0, 5, 20)]
    errors = [float(np.mean((chunk[0] - action) ** 2)) for chunk, action in zip(chunks, recorded, strict=True)]
    assert all(np.isfinite(errors))  # the first action of each chunk against the recorded one

    # served: the same chunks through the openpi-compatible server
    loaded = load_served_policy(checkpoint)
    assert loaded.spec.image_keys == tuple(image_key(c) for c in LIBERO_CAMERAS)
    assert (loaded.spec.state_dim, loaded.spec.action_dim) == (8, 7)
    with single_thread(), ServerThread(loaded.policy, loaded.spec) as server, RemotePolicy(server.url) as remote:
        remote.reseed(0)
        served = [remote.predict_action_chunk(obs) for obs in observations]
    for got, want in zip(served, chunks, strict=True):
        np.testing.assert_array_equal(got, want)
