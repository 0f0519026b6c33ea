"""The oracle benchmark (benchmarks/oracle_planning.py): candidates re-ranked by executing them in the simulator."""

import json

import numpy as np
import pytest

from benchmarks.oracle_planning import FlowSampleProposer, OracleSelection, main
from benchmarks.synthetic import save_random_checkpoint
from helpers.models import tiny_config
from vlajepa.constants import OBS_STATE
from vlajepa.policies.protocol import Plan

SEED = 11


class StubProposer:
    """Fixed random candidates; its learned choice is candidate 1."""

    n_action_steps = 5

    def __init__(self, scored: bool = True) -> None:
        self.scored = scored
        self.rng = np.random.default_rng(0)

    def reset(self) -> None:
        pass

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def plan(self, observation):
        candidates = self.rng.uniform(-1, 1, size=(4, self.n_action_steps, 4)).astype(np.float32)
        return Plan(candidates, np.arange(4.0) if self.scored else None, best=1)


def _outcome(task: str, prefix: np.ndarray, chunk: np.ndarray) -> float:
    """Progress after ``prefix`` then ``chunk`` in a fresh environment (no snapshots involved)."""
    from vlajepa.envs import MetaWorldEnv

    env = MetaWorldEnv(task, image_size=16)
    try:
        env.reset(seed=SEED)
        for action in prefix:
            env.step(action, render=False)
        for action in chunk:
            *_, info = env.step(action, render=False)
            if info["success"]:
                return info["progress"] + 1.0
        return info["progress"]
    finally:
        env.close()


@pytest.mark.slow
def test_oracle_executes_the_candidate_with_the_most_progress_and_leaves_the_simulator_as_it_was():
    from vlajepa.envs import MetaWorldEnv

    env = MetaWorldEnv("push-v3", image_size=16)
    try:
        observation, _ = env.reset(seed=SEED)
        prefix = np.random.default_rng(3).uniform(-1, 1, size=(6, 4)).astype(np.float32)
        for action in prefix:
            observation, *_ = env.step(action)
        proposer = StubProposer()
        oracle = OracleSelection(env, proposer)
        oracle.reset()
        oracle.reseed(5)
        plan = StubProposer()
        plan.reseed(5)
        candidates = plan.plan(observation).candidates
        before = env.get_sim_state()
        chosen = oracle.predict_action_chunk(observation)
        values = [_outcome("push-v3", prefix, chunk) for chunk in candidates]
        assert len(set(values)) > 1  # the candidates differ, so the choice means something
        np.testing.assert_array_equal(chosen, candidates[int(np.argmax(values))])
        after = env.get_sim_state()
        np.testing.assert_array_equal(before.physics, after.physics)
        assert before.wrapper["steps"] == after.wrapper["steps"]
        counts = oracle.episode_diagnostics()
        assert counts["decisions"] == counts["scored_decisions"] == 1
        assert counts["agreements"] == int(np.argmax(values) == 1)
    finally:
        env.close()


def test_plan_checks_its_shapes():
    candidates = np.zeros((3, 2, 4), dtype=np.float32)
    assert Plan(candidates, None, 2).chunk.shape == (2, 4)
    with pytest.raises(ValueError, match="best=3"):
        Plan(candidates, None, 3)
    with pytest.raises(ValueError, match="scores"):
        Plan(candidates, np.zeros(2), 0)
    with pytest.raises(ValueError, match="candidates"):
        Plan(candidates[0], None, 0)


def test_flow_sample_proposer_puts_the_deterministic_chunk_first(tmp_path):
    from vlajepa.policies import load_policy

    checkpoint = save_random_checkpoint(tmp_path / "ckpt", tiny_config())
    config = tiny_config()
    rng = np.random.default_rng(0)
    observation = {
        f"observation.images.{config.cameras[0]}": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        "task": "push the puck to the goal",
    }
    proposer = FlowSampleProposer(load_policy(checkpoint), candidates=5)
    proposer.reseed(3)
    plan = proposer.plan(observation)
    assert plan.candidates.shape == (5, config.n_action_steps, 4) and plan.candidates.dtype == np.float32
    assert plan.scores is None and plan.best == 0
    deterministic = load_policy(checkpoint, noise_scale=0.0).predict_action_chunk(observation)
    np.testing.assert_allclose(plan.candidates[0], deterministic, atol=1e-5)
    assert len({c.tobytes() for c in plan.candidates}) == 5  # independent samples
    proposer.reseed(3)
    np.testing.assert_array_equal(proposer.plan(observation).candidates, plan.candidates)  # seeded per episode


@pytest.mark.slow
def test_the_benchmark_writes_paired_rows_and_decisions(tmp_path):
    checkpoint = save_random_checkpoint(tmp_path / "ckpt", tiny_config())
    out = tmp_path / "oracle"
    report = main([
        "--policy", f"checkpoint:{checkpoint}", "--name", "tiny", "--tasks", "reach", "--episodes", "1",
        "--max-steps", "8", "--candidates", "3", "--workers", "1", "--no-progress", "--out", str(out),
    ])
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["rows"] == report["rows"] and written["git_commit"]
    methods = [row["method"] for row in written["rows"]]
    assert methods == ["tiny", "tiny+oracle"]
    oracle = written["rows"][1]
    assert oracle["episodes"] == 1 and oracle["decisions"] == 2  # 8 steps, chunks of 4
    assert oracle["learned_agreement"] is None  # flow samples carry no learned scores
    assert "Oracle decisions" in out.with_suffix(".md").read_text()


class ScoringStubProposer(StubProposer):
    """A stub planner whose 'learned score' of a frame is its mean red intensity."""

    def score_frame(self, image: np.ndarray, instruction: str) -> float:
        return float(image[..., 0].mean())


def test_judge_score_rates_the_frame_each_candidate_really_reaches():
    from vlajepa.envs import MetaWorldEnv

    env = MetaWorldEnv("push-v3", image_size=16)
    try:
        observation, _ = env.reset(seed=SEED)
        oracle = OracleSelection(env, ScoringStubProposer(), judge="score")
        oracle.reset()
        oracle.reseed(7)
        candidates = ScoringStubProposer()
        candidates.reseed(7)
        plan = candidates.plan(observation)
        snapshot = env.get_sim_state()
        reached = []
        for chunk in plan.candidates:
            for action in chunk:
                env.step(action, render=False)
            reached.append(float(env.render_view(env.view)[..., 0].mean()))
            env.set_sim_state(snapshot)
        chosen = oracle.predict_action_chunk(observation)
        np.testing.assert_array_equal(chosen, plan.candidates[int(np.argmax(reached))])
    finally:
        env.close()
    with pytest.raises(ValueError, match="needs a planner"):
        OracleSelection(None, StubProposer(), judge="score")
