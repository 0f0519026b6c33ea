"""Oracle upper bound of action selection: re-rank a proposer's candidate chunks by executing them in the simulator.

At every replanning step a proposer offers N candidate action chunks for the current observation. The oracle
snapshots the simulator (MuJoCo state and MetaWorld's bookkeeping, :meth:`MetaWorldEnv.get_sim_state`), executes
each candidate's ``n_action_steps`` actions, scores it by the true task progress reached at its end (MetaWorld's
dense reward / 10; a candidate that solves the task on the way scores above any that does not, since the episode
would end there), restores the snapshot, and then executes the best candidate (ties: the lowest index). It is
greedy (one chunk ahead) and privileged: it says how much choosing among these candidates could gain with a
perfect world model and a perfect score, not what a deployable planner gets.

Proposers: a planner checkpoint (``--planner DIR``: a policy with ``plan(observation) -> Plan``,
:class:`vlajepa.policies.protocol.Plan`), or a plain VLA-JEPA/BC checkpoint (``--policy checkpoint:PATH``) whose
candidates are its deterministic chunk (noise scale 0, candidate 0) and N-1 independent flow-head samples. Each
run also evaluates the proposer acting alone on the same seeds (paired), unless ``--no-base``. Rows (the shared
evaluation schema): ``<name>`` (a plain policy) or ``<name>+plan`` (a planner) and ``<name>+oracle``; oracle rows
add ``decisions`` and, when the proposer scores its candidates, ``learned_agreement``: how often the planner's own
choice equals the oracle's.

    python benchmarks/oracle_planning.py --policy checkpoint:outputs/demo/cotrain/checkpoints/last --name vla-jepa \\
        --tasks mt10 --episodes 5 --candidates 16 --out benchmarks/results/planning/oracle_demo
"""

from __future__ import annotations

import argparse
import functools
from collections import defaultdict
from typing import Any, Protocol

import numpy as np
import torch

from vlajepa.commands.evaluate import parse_policy, parse_settings, parse_tasks, rendering_for
from vlajepa.constants import TASK
from vlajepa.eval.policies import PolicySource
from vlajepa.eval.report import build_report, markdown_table, rows_from_episodes
from vlajepa.eval.runner import EpisodeResult, EvalConfig, evaluate
from vlajepa.io_utils import write_report_files
from vlajepa.policies.protocol import Plan

SUCCESS_BONUS = 1.0  # added to a candidate's progress when it solves the task: success outranks any progress


class Proposer(Protocol):
    """What the oracle needs from a proposer (the planner policy provides it)."""

    n_action_steps: int

    def reset(self) -> None: ...

    def reseed(self, seed: int) -> None: ...

    def plan(self, observation: dict[str, Any]) -> Plan: ...


class FlowSampleProposer:
    """Candidates from a plain VLA-JEPA/BC checkpoint: its deterministic chunk (noise scale 0) as candidate 0 and
    ``candidates - 1`` independent flow-head samples at the policy's noise scale, drawn from a generator seeded
    per episode like the policy's own. The observation is encoded once; no learned scores (``scores=None``)."""

    def __init__(self, policy: Any, candidates: int) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        self.policy = policy
        self.candidates = candidates
        self.n_action_steps = policy.n_action_steps
        self.generator = torch.Generator().manual_seed(0)

    def reset(self) -> None:
        self.policy.reset()

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    @torch.inference_mode()
    def plan(self, observation: dict[str, Any]) -> Plan:
        policy = self.policy
        batch = policy.processor.preprocess([observation], policy.device)
        chunks = policy.sample_candidates(
            batch, self.candidates, noise_scale=policy.noise_scale, include_deterministic=True, generator=self.generator
        )[0]
        actions = policy.processor.postprocess(chunks[:, : self.n_action_steps])
        return Plan(candidates=actions, scores=None, best=0)


class OracleSelection:
    """A privileged policy: executes, of the proposer's candidates, the one that reaches the most task progress in
    a copy of the simulator (see the module docstring); counts how often the proposer's own choice agrees."""

    def __init__(self, env: Any, proposer: Proposer, judge: str = "progress") -> None:
        if judge == "score" and not callable(getattr(proposer, "score_frame", None)):
            raise ValueError("--judge score needs a planner (its learned score rates the outcomes)")
        self.env = env
        self.proposer = proposer
        self.judge = judge
        self._counts: dict[str, float] = {}

    def reset(self) -> None:
        self.proposer.reset()
        self._counts = {"decisions": 0, "scored_decisions": 0, "agreements": 0, "picked_first": 0, "value_range": 0.0}

    def reseed(self, seed: int) -> None:
        self.proposer.reseed(seed)

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        plan = self.proposer.plan(observation)
        snapshot = self.env.get_sim_state()
        values = np.empty(len(plan.candidates))
        for index, chunk in enumerate(plan.candidates):
            values[index] = (
                self._outcome(chunk) if self.judge == "progress" else self._scored_outcome(chunk, observation)
            )
            self.env.set_sim_state(snapshot)
        best = int(np.argmax(values))
        counts = self._counts
        counts["decisions"] += 1
        counts["picked_first"] += int(best == 0)
        counts["value_range"] += float(values.max() - values.min())
        if plan.scores is not None:
            counts["scored_decisions"] += 1
            counts["agreements"] += int(plan.best == best)
        return np.asarray(plan.candidates[best], dtype=np.float32)

    def _outcome(self, chunk: np.ndarray) -> float:
        progress = 0.0
        for action in chunk:
            _, _, terminated, truncated, info = self.env.step(action, render=False)
            progress = info["progress"]
            if info["success"]:
                return progress + SUCCESS_BONUS
            if terminated or truncated:
                break
        return progress

    def _scored_outcome(self, chunk: np.ndarray, observation: dict[str, Any]) -> float:
        """The planner's learned score of the frame the chunk really leads to (its world model left out)."""
        for action in chunk:
            _, _, terminated, truncated, _ = self.env.step(action, render=False)
            if terminated or truncated:
                break
        return self.proposer.score_frame(self.env.render_view(self.env.view), observation[TASK])

    def episode_diagnostics(self) -> dict[str, float]:
        return dict(self._counts)


def oracle_adapter(policy: Any, env: Any, candidates: int, judge: str = "progress") -> OracleSelection:
    """Wrap the policy a worker built: a planner proposes itself; a plain checkpoint through flow samples."""
    proposer = policy if callable(getattr(policy, "plan", None)) else FlowSampleProposer(policy, candidates)
    return OracleSelection(env, proposer, judge)


def oracle_rows(name: str, episodes: list[EpisodeResult], severity: int, method: str) -> list[dict[str, Any]]:
    """Rows of the oracle with its decision counts per (task, setting)."""
    rows = rows_from_episodes(method, episodes, severity=severity)
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for episode in episodes:
        for key, value in episode.diagnostics.items():
            totals[(episode.task, episode.setting)][key] += value
    for row in rows:
        row.update(decision_fields(totals[(row["task"], row["setting"])]))
    return rows


def decision_fields(total: dict[str, float]) -> dict[str, Any]:
    decisions = int(total.get("decisions", 0))
    scored = int(total.get("scored_decisions", 0))
    return {
        "decisions": decisions,
        "oracle_picked_first": total.get("picked_first", 0) / decisions if decisions else None,
        "mean_value_range": total.get("value_range", 0.0) / decisions if decisions else None,
        "learned_agreement": total.get("agreements", 0) / scored if scored else None,
    }


def decisions_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "",
        "Oracle decisions (candidate 0: the proposer's first candidate, the deterministic chunk for a plain policy; "
        "value range: best minus worst candidate's outcome, mean per decision; agreement: the learned choice equals "
        "the oracle's):",
        "",
        "| method | task | setting | decisions | picked candidate 0 | mean value range | learned agreement |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    for row in rows:
        if "decisions" in row:
            lines.append(
                f"| {row['method']} | {row['task']} | {row['setting']} | {row['decisions']} | "
                f"{cell(row['oracle_picked_first'])} | {cell(row['mean_value_range'])} | "
                f"{cell(row['learned_agreement'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--policy", help="checkpoint:PATH of a plain policy (candidates: flow-head samples)")
    source.add_argument("--planner", help="a planner checkpoint folder (its plan() proposes and scores)")
    parser.add_argument("--name", default=None, help="method name of the rows (default: policy or planner)")
    parser.add_argument("--candidates", type=int, default=16, help="--policy: candidates per step (default 16)")
    parser.add_argument("--tasks", default="mt10", help="mt10, mt50 or a comma-separated list (default: mt10)")
    parser.add_argument("--settings", default="id", help="id, all or perturbation names (default: id)")
    parser.add_argument("--severity", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--episodes", type=int, default=5, help="episodes per task and setting (default 5)")
    parser.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the task's)")
    parser.add_argument("--seed", type=int, default=1_000_000, help="base evaluation seed (eval's default)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--judge",
        choices=("progress", "score"),
        default="progress",
        help="progress: the true task progress of each candidate's outcome (the oracle); score: the planner's "
        "learned score of the frame each candidate really reaches (the score without the world model)",
    )
    parser.add_argument("--no-base", dest="base", action="store_false", help="skip the proposer acting alone")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default="outputs/oracle_planning/results", help="output prefix (.json, .md)")
    args = parser.parse_args(argv)
    if args.candidates < 1:
        parser.error(f"--candidates must be at least 1, got {args.candidates}")

    if args.planner is not None:
        name = args.name or "planner"
        policy = PolicySource("checkpoint", {"path": args.planner}, f"{name}+plan")
    else:
        name = args.name or "policy"
        policy = parse_policy(args.policy, name)
        if policy.kind != "checkpoint":
            parser.error(f"--policy must be checkpoint:PATH (the oracle samples its flow head), not {args.policy!r}")
    camera, image_size = rendering_for(policy, None, None)
    config = EvalConfig(
        tasks=parse_tasks(args.tasks),
        settings=parse_settings(args.settings),
        episodes=args.episodes,
        severity=args.severity,
        image_size=image_size,
        camera=camera,
        max_steps=args.max_steps,
        workers=args.workers,
        seed=args.seed,
        videos=0,
    )
    progress = not args.no_progress
    rows: list[dict[str, Any]] = []
    wall = 0.0
    if args.base:
        base, seconds = evaluate(policy, config, progress=progress)
        rows += rows_from_episodes(policy.method, base, severity=config.severity)
        wall += seconds
    if args.judge == "score" and args.planner is None:
        parser.error("--judge score needs --planner (its learned score rates the outcomes)")
    adapter = functools.partial(oracle_adapter, candidates=args.candidates, judge=args.judge)
    method = f"{name}+oracle" if args.judge == "progress" else f"{name}+score-on-true-outcome"
    oracle_source = PolicySource(policy.kind, policy.kwargs, method)
    oracle, seconds = evaluate(oracle_source, config, progress=progress, adapter=adapter)
    oracle_part = oracle_rows(name, oracle, config.severity, method)
    rows += oracle_part
    wall += seconds
    total: dict[str, float] = defaultdict(float)
    for episode in oracle:
        for key, value in episode.diagnostics.items():
            total[key] += value
    report = build_report(
        rows,
        wall,
        config=config,
        policy={"kind": policy.kind, **policy.kwargs},
        proposer="planner" if args.planner is not None else f"flow samples: deterministic + {args.candidates - 1}",
        candidates=None if args.planner is not None else args.candidates,
        oracle={
            "score": "task progress at the chunk's end, +1 on success; greedy, one chunk ahead"
            if args.judge == "progress"
            else "the planner's learned score of the frame at the chunk's end (no world model); greedy",
            **decision_fields(total),
        },
    )
    title = f"Oracle selection: {name} on {args.tasks}"
    write_report_files(args.out, report, markdown_table(report, title) + decisions_markdown(oracle_part))
    print(markdown_table(report, title) + decisions_markdown(oracle_part))
    return report


if __name__ == "__main__":
    main()
