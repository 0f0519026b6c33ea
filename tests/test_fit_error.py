"""benchmarks/fit_error.py: a policy that replays the demonstrations has zero error at shift 0 only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks import fit_error
from vlajepa.constants import ACTION, OBS_STATE, TASK

KEY = "observation.images.cam"


class ReplayDataset:
    """Two 30-frame episodes whose state is the frame number, so a policy can look its actions up."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(video_keys=[KEY])
        rng = np.random.default_rng(0)
        self.columns = {
            ACTION: rng.uniform(-1, 1, size=(60, 4)).astype(np.float32),
            OBS_STATE: np.repeat(np.arange(60, dtype=np.float32)[:, None], 4, axis=1),
            "episode_index": np.repeat([0, 1], 30),
        }

    def column(self, key: str) -> np.ndarray:
        return self.columns[key]

    def __getitem__(self, row: int) -> dict:
        return {KEY: torch.zeros(3, 4, 4), "task": "reach the goal"}


class ReplayPolicy:
    """Returns the recorded chunk of the frame its state names: a perfect fit."""

    n_action_steps = 4

    def __init__(self, dataset: ReplayDataset) -> None:
        self.actions = dataset.columns[ACTION]

    def predict_action_chunk(self, observation: dict) -> np.ndarray:
        assert observation[TASK] == "reach the goal" and observation[KEY].dtype == np.uint8
        row = int(observation[OBS_STATE][0])
        return self.actions[row : row + self.n_action_steps]


def test_rows_keep_a_margin_inside_each_episode():
    rows = fit_error.sample_rows(np.repeat([0, 1, 2], 30), episode_stride=2, stride=5, margin=6)
    assert [r.tolist() for r in rows] == [[6, 11, 16, 21], [66, 71, 76, 81]]  # episodes 0 and 2


def test_a_replaying_policy_has_zero_error_at_shift_zero_only():
    dataset = ReplayDataset()
    rows = fit_error.sample_rows(dataset.column("episode_index"), 1, 3, margin=2 + 4)
    report = fit_error.fit_errors(ReplayPolicy(dataset), dataset, rows, shifts=[-2, -1, 0, 1, 2])
    reach = report["reach-v3"]  # the canonical instruction maps back to its MetaWorld task
    assert reach["frames"] == sum(len(r) for r in rows)
    assert reach["mae"] == [0.0] * 4 and reach["shift_mae"]["0"] == 0.0
    assert min(reach["shift_mae"][str(k)] for k in (-2, -1, 1, 2)) > 0.1
    assert all(b > 0.1 for b in reach["mean_baseline"])  # random actions: far from their mean
    text = fit_error.markdown({"command": "c", "wall_time_s": 1.0, "robot": "data/heldout", "horizon": 4,
                               "shifts": [-2, -1, 0, 1, 2], "checkpoints": {"p": report}})
    assert "| reach-v3 |" in text and text.startswith("# Open-loop fit on `data/heldout`")


def test_checkpoint_specs_need_a_name_and_an_existing_directory(tmp_path):
    import argparse

    from vlajepa.commands.evaluate import named_checkpoint

    assert named_checkpoint(f"bc={tmp_path}") == ("bc", str(tmp_path))
    for bad in (str(tmp_path), f"={tmp_path}", f"bc={tmp_path / 'missing'}"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=PATH"):
            named_checkpoint(bad)
