"""Planning-step latency: one world-model planning step (N candidates proposed, imagined in one batched rollout,
scored) against the base policy's own step, on one CPU thread, measured interleaved in one process.

The planner is a trained one (``--planner DIR``) or, with ``--policy CKPT`` alone, an untrained planner with the
default world model and score around that checkpoint (latency does not depend on the weights). The observation is a
random image at the policy's resolution, a state and one instruction (its embedding is cached after the first call,
as during an episode). A breakdown times the proposal, the current frame's encoding and the imagination + score.

Writes ``benchmarks/results/planning/latency.json`` (``candidates``, ``p50_ms``, ``p90_ms``, ``policy_p50_ms``, ...)
and ``.md``:

    python benchmarks/bench_planner.py --planner outputs/planning/bc_planner --calls 100
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from vlajepa.io_utils import write_report_files

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "planning" / "latency"


def observation(config, rng: np.random.Generator) -> dict:
    from vlajepa.constants import OBS_STATE, TASK, image_key

    obs = {
        image_key(c): rng.integers(0, 256, (config.image_size, config.image_size, 3), np.uint8) for c in config.cameras
    }
    obs[OBS_STATE] = rng.uniform(-1, 1, config.state_dim).astype(np.float32)
    obs[TASK] = "open the drawer"
    return obs


def build_planner(args: argparse.Namespace):
    from vlajepa.policies import PlannerPolicy, load_policy
    from vlajepa.train.planner import planner_config_for

    if args.planner:
        return load_policy(args.planner, num_candidates=args.candidates)
    return PlannerPolicy(planner_config_for(args.policy, num_candidates=args.candidates)).eval()


def timed(fn, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--planner", help="trained planner checkpoint folder")
    source.add_argument("--policy", help="base policy checkpoint (an untrained planner is built around it)")
    parser.add_argument("--candidates", type=int, default=16, help="candidates per planning step (default 16)")
    parser.add_argument("--calls", type=int, default=100, help="timed calls of each (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=OUT, help="output prefix (.json and .md)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    planner = build_planner(args)
    base = planner.base
    obs = observation(planner.config, np.random.default_rng(0))
    batch = planner.processor.preprocess([obs])
    for _ in range(args.warmup):
        planner.predict_action_chunk(obs)
        base.predict_action_chunk(obs)

    plan_ms, policy_ms = [], []
    for _ in range(args.calls):  # interleaved, so load changes on the machine hit both alike
        plan_ms += timed(lambda: planner.predict_action_chunk(obs), 1)
        policy_ms += timed(lambda: base.predict_action_chunk(obs), 1)
    with torch.inference_mode():
        propose = timed(
            lambda: base.sample_candidates(batch, args.candidates, generator=torch.Generator().manual_seed(0)), 20
        )
        images = [batch[key] for key in batch if key.startswith("observation.images")]
        encode = timed(lambda: planner.world_model.encode(images), 20)
        current = planner.world_model.encode(images)
        text = planner.world_model.instruction([obs["task"]])
        candidates = base.sample_candidates(batch, args.candidates)
        imagine = timed(lambda: planner.evaluate_candidates(current, text, candidates), 20)

    def p(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 2)

    report = {
        "command": shlex.join(["python", *sys.argv]),
        "data_revision": "none",  # timings do not depend on the data the weights came from
        "candidates": args.candidates,
        "p50_ms": p(plan_ms, 50),
        "p90_ms": p(plan_ms, 90),
        "policy_p50_ms": p(policy_ms, 50),
        "policy_p90_ms": p(policy_ms, 90),
        "breakdown_p50_ms": {
            "propose": p(propose, 50),
            "encode_current": p(encode, 50),
            "imagine_and_score": p(imagine, 50),
        },
        "calls": args.calls,
        "threads": args.threads,
        "planner": args.planner,
        "base_policy": planner.config.base_policy,
        "cem_iterations": planner.config.cem_iterations,
        "world_model_steps": planner.horizon_steps,
    }
    table = [
        "| step | p50 ms | p90 ms |",
        "|---|---|---|",
        f"| planner, {args.candidates} candidates | {report['p50_ms']} | {report['p90_ms']} |",
        f"| base policy alone | {report['policy_p50_ms']} | {report['policy_p90_ms']} |",
        "",
        "Breakdown (p50 ms): " + ", ".join(f"{k} {v}" for k, v in report["breakdown_p50_ms"].items()),
    ]
    paths = write_report_files(
        args.out, report, "# Planning-step latency (one CPU thread)\n\n" + "\n".join(table) + "\n"
    )
    print("\n".join(table))
    print(paths)


if __name__ == "__main__":
    main()
