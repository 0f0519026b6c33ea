"""benchmarks/probe_positions.py: errors in centimetres against a mean baseline, static parts left out."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import probe_positions as probe


def scene(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Labels in metres: obj1 and the goal move, obj2 is absent (zeros), like most MetaWorld tasks."""
    label = np.zeros((frames, 9))
    label[:, 0:3] = rng.uniform(-0.1, 0.1, (frames, 3))
    label[:, 6:9] = rng.uniform(-0.1, 0.1, (frames, 3))
    return label


def test_a_perfect_read_out_beats_the_mean_baseline_and_static_parts_are_left_out():
    rng = np.random.default_rng(0)
    train_label, heldout_label = scene(rng, 200), scene(rng, 100)
    off = heldout_label.copy()
    off[:, 6] += 0.02  # the goal's x is 2 cm off on held-out frames
    train = {"reach-v3": {"predicted": train_label, "label": train_label}}
    heldout = {"reach-v3": {"predicted": off, "label": heldout_label}}
    report = probe.report_for(train, heldout)["reach-v3"]
    assert set(report["parts"]) == {"obj1", "goal"}  # obj2 never moves: not a part to find
    assert report["frames"] == {"train": 200, "heldout": 100}
    goal = report["parts"]["goal"]
    assert goal["train"] == [0.0, 0.0, 0.0] and goal["heldout"] == pytest.approx([2.0, 0.0, 0.0], abs=1e-6)
    # uniform on +-10 cm around a mean near 0: about 5 cm from the mean on every axis
    assert all(4.0 < v < 6.0 for v in goal["heldout_mean_baseline"])
    pooled = probe.pooled({"reach-v3": report})
    assert pooled["heldout"] == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)  # mean of obj1 (0 cm) and goal (2 cm)
    text = probe.markdown({"command": "c", "wall_time_s": 1.0, "train": "t", "heldout": "h",
                           "checkpoints": {"bc": {"tasks": {"reach-v3": report}, "pooled": pooled}}})
    assert "| bc | reach-v3 | goal | 0.0 / 0.0 / 0.0 | 2.0 / 0.0 / 0.0 |" in text


def test_a_checkpoint_without_a_read_out_is_refused():
    policy = SimpleNamespace(model=SimpleNamespace(eval=lambda: SimpleNamespace(environment_state_head=None)))
    with pytest.raises(SystemExit, match="no scene-state read-out"):
        probe.read_out(policy, "data/x", stride=1)
