"""The paper-scale path (tiny random VLM student, tiny V-JEPA 2 target) in two CPU processes (gloo) through
``accelerate launch``: training runs, the frozen target's latent cache is shared, and the weights stay in sync.

This file is also the launched script: ``python tests/test_hf_distributed.py OUT ROBOT`` trains and writes each
process's final weights to ``OUT/rank<r>.safetensors`` and its losses to ``OUT/report<r>.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers.distributed import launch_two_processes, read_reports, train_and_record


@pytest.mark.slow
def test_hf_path_trains_in_sync_in_two_processes(tmp_path):
    import torch
    from safetensors.torch import load_file

    from benchmarks.synthetic import write_robot_dataset

    robot = write_robot_dataset(tmp_path / "robot", (12, 9, 15))
    out = tmp_path / "run"
    launch_two_processes(__file__, out, robot)

    reports = read_reports(out)
    assert sorted(r["rank"] for r in reports) == [0, 1] and all(r["world_size"] == 2 for r in reports)
    assert reports[0]["losses"] == reports[1]["losses"]
    ranks = [load_file(str(out / f"rank{rank}.safetensors")) for rank in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    initial = load_file(str(out / "initial.safetensors"))
    assert any(not torch.equal(ranks[0][k], initial[k]) for k in initial if k.startswith("student.vlm."))
    assert (out / "latent_cache").is_dir()  # the frozen V-JEPA 2 latents were cached once for both processes
    assert (out / "checkpoints" / "last" / "rng_state_1.pt").is_file()


def _worker(out: Path, robot: str) -> None:
    """Runs in each launched process."""
    import torch

    from helpers.hf import tiny_hf_config
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.trainer import Trainer

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(robot=robot, steps=3, batch_size=2, warmup_steps=1, log_every=1, tensorboard=False)
    train_and_record(Trainer(tiny_hf_config(), config, out, progress=False), out)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
