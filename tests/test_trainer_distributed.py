"""Two CPU processes (gloo) through ``accelerate launch``: training (with a co-trained planner) runs, and parameters
stay in sync.

This file is also the launched script: ``python tests/test_trainer_distributed.py OUT ROBOT VIDEO`` trains a tiny
model and writes each process's final weights to ``OUT/rank<r>.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers.distributed import launch_two_processes, read_reports, train_and_record


@pytest.mark.slow
def test_two_processes_train_in_sync(tmp_path):
    import torch
    from safetensors.torch import load_file

    from benchmarks.synthetic import write_robot_dataset, write_video_set

    robot = write_robot_dataset(tmp_path / "robot", (12, 9, 15))
    video = write_video_set(tmp_path / "video", (10, 14))
    out = tmp_path / "run"
    launch_two_processes(__file__, out, robot, video)

    reports = read_reports(out)
    assert sorted(r["rank"] for r in reports) == [0, 1] and all(r["world_size"] == 2 for r in reports)
    assert reports[0]["losses"] == reports[1]["losses"]  # the logged loss is the mean over both processes
    ranks = [load_file(str(out / f"rank{rank}.safetensors")) for rank in (0, 1)]
    initial = load_file(str(out / "initial.safetensors"))
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # in sync
    assert any(not torch.equal(ranks[0][k], initial[k]) for k in initial)  # and trained
    state = json.loads((out / "checkpoints" / "last" / "training_state.json").read_text())
    assert state["world_size"] == 2 and state["samples_seen"] == 4 * 2 * 2  # steps x batch x processes
    assert (out / "checkpoints" / "last" / "rng_state_1.pt").is_file()
    # the co-trained planner: trained on both processes, each with its own sampler position
    assert sorted(state["planner"]) == ["0", "1"] and state["planner"]["0"] != state["planner"]["1"]
    assert (out / "checkpoints" / "last" / "planner" / "config.json").is_file()


def _worker(out: Path, robot: str, video: str) -> None:
    """Runs in each launched process."""
    import torch

    from helpers.models import TINY_SCORE, TINY_WORLD_MODEL, tiny_config
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.planner import CO_TRAINED_BASE, planner_config_from
    from vlajepa.train.trainer import Trainer

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        robot=robot, video=video, steps=4, batch_size=2, warmup_steps=1, log_every=1, tensorboard=False
    )  # robot and video batches alternate: the action head is unused on video steps
    planner = planner_config_from(tiny_config(), CO_TRAINED_BASE, world_model=TINY_WORLD_MODEL, score=TINY_SCORE)
    train_and_record(Trainer(tiny_config(), config, out, planner=planner, progress=False), out)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
