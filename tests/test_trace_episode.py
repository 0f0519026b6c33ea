"""benchmarks/trace_episode.py: one row per chunk, the whole chunk executed, the episode ends on success."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import trace_episode
from vlajepa.constants import OBS_STATE


class LineEnv:
    """The hand moves by the x action along a line; success once it passes x = 0.25; the object sits at x = 0.3."""

    instruction = "reach the goal"

    def reset(self, seed):
        self.x, self.steps = 0.0, 0
        return self.obs(), {}

    def obs(self):
        return {OBS_STATE: np.array([self.x, 0.0, 0.0, 1.0], dtype=np.float32)}

    def environment_state(self):
        return np.array([0.3, 0.0, 0.0, 0, 0, 0, 0, 0, 0], dtype=np.float32)

    def expert_action(self):
        return np.array([1.0, 0.0, 0.0, 1.0])

    def step(self, action):
        self.x += 0.1 * float(action[0])
        self.steps += 1
        return self.obs(), 0.0, False, self.steps >= 50, {"success": self.x > 0.25}


class ConstantPolicy:
    def __init__(self, x):
        self.x, self.calls = x, 0

    def reset(self):
        pass

    def reseed(self, seed):
        pass

    def predict_action_chunk(self, observation):
        self.calls += 1
        return np.tile([self.x, 0.0, 0.0, 1.0], (2, 1))


def test_a_trace_has_a_row_per_chunk_and_stops_at_success():
    episode = trace_episode.trace(ConstantPolicy(1.0), LineEnv(), seed=3)
    assert episode["success"] and episode["steps"] == 3  # 0.1, 0.2, 0.3: the third step succeeds mid-chunk
    assert [row["step"] for row in episode["chunks"]] == [0, 2]
    first = episode["chunks"][0]
    assert first["object"] == [0.3, 0.0, 0.0] and first["xy_distance"] == pytest.approx(0.3)
    assert first["policy_first_action"] == [1.0, 0.0, 0.0, 1.0] and first["expert_action"] == [1.0, 0.0, 0.0, 1.0]
    text = trace_episode.markdown({"checkpoint": "ck", "task": "reach-v3", "command": "c", "wall_time_s": 1.0,
                                   "episodes": [episode]})
    assert "## Seed 3: \"reach the goal\", success after 3 steps" in text


def test_a_failing_policy_runs_until_the_time_limit():
    episode = trace_episode.trace(ConstantPolicy(-1.0), LineEnv(), seed=0)
    assert not episode["success"] and episode["steps"] == 50 and len(episode["chunks"]) == 25
