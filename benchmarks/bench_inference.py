"""Inference latency: one action chunk at batch 1 (``VLAJEPAPolicy.predict_action_chunk``), p50 / p99, peak memory.

Each measured configuration runs in a fresh child process with ``--threads`` torch threads (default 1: the target
is p50 <= 20 ms on one CPU core). The policy is built from a YAML preset with random weights (latency does not
depend on the weights) and a min/max normalizer; the observation is a random 96x96 image, a 4-D state and one
instruction (the frozen MiniLM caches its embedding after the first call, as it does during an episode). A
breakdown times the student (vision encoder + fusion) and the action head's Euler steps separately.
``--repeats N`` measures each configuration in N fresh processes: on this shared machine the same code's p50 moves by
several milliseconds from one process to the next, so the report gives the median of the per-process p50s.

Writes ``benchmarks/results/perf/inference_perf.json`` and ``.md`` with the exact command.

    python benchmarks/bench_inference.py                       # the default preset, 1 thread
    python benchmarks/bench_inference.py --config default --calls 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vlajepa.io_utils import write_report_files

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "perf"
INSTRUCTION = "open the drawer"


def build_policy(config_path: str, euler_steps: int | None):
    """A policy with random weights for the preset (its normalizer maps [-1, 1] to itself)."""
    from vlajepa.constants import ACTION, OBS_STATE
    from vlajepa.normalize import Normalizer
    from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy
    from vlajepa.presets import preset_path

    config = VLAJEPAConfig.from_yaml(preset_path(config_path))
    ones = [1.0] * config.action_dim
    stats = {
        ACTION: {"min": [-v for v in ones], "max": ones},
        OBS_STATE: {"min": [-1.0] * config.state_dim, "max": [1.0] * config.state_dim},
    }
    normalizer = Normalizer.from_stats(stats, {ACTION: "min_max", OBS_STATE: "min_max"})
    return VLAJEPAPolicy(config, normalizer, num_inference_steps=euler_steps).eval()


def observation(config, rng: np.random.Generator) -> dict:
    from vlajepa.constants import OBS_STATE, TASK, image_key

    size = config.image_size
    obs = {image_key(c): rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for c in config.cameras}
    obs[OBS_STATE] = rng.uniform(-1, 1, config.state_dim).astype(np.float32)
    obs[TASK] = INSTRUCTION
    return obs


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def child(args: argparse.Namespace) -> None:
    """Time ``--calls`` chunk predictions after ``--warmup`` untimed ones; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    policy = build_policy(args.config, args.euler_steps)
    model, config = policy, policy.config
    obs = observation(config, rng)
    for _ in range(args.warmup):
        policy.predict_action_chunk(obs)
    latencies = []
    for _ in range(args.calls):
        start = time.perf_counter()
        policy.predict_action_chunk(obs)
        latencies.append((time.perf_counter() - start) * 1000)
    batch = policy.processor.preprocess([obs])
    student, head = [], []
    with torch.inference_mode():  # as predict_action_chunk
        for _ in range(args.calls // 4 or 1):
            start = time.perf_counter()
            out = model.encode(batch)
            student.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            model.action_head.sample(out.embodied_tokens, out.state, args.euler_steps)
            head.append((time.perf_counter() - start) * 1000)
    result = {
        "config": args.config,
        "threads": args.threads,
        "euler_steps": args.euler_steps or config.action_head.num_inference_steps,
        "calls": args.calls,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(float(np.mean(latencies)), 2),
        "student_p50_ms": round(percentile(student, 50), 2),
        "action_head_p50_ms": round(percentile(head, 50), 2),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result), flush=True)


def markdown(report: dict) -> str:
    lines = [
        "# Inference latency (one action chunk, batch 1)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, torch {report['machine']['torch']}; load average before / "
        f"after: {report['load_before']} / {report['load_after']} (other work on the machine slows every number).",
        "Random weights, random 96x96 observation, cached instruction embedding; each row a fresh process; "
        "latency of `VLAJEPAPolicy.predict_action_chunk` (preprocessing, student, Euler steps, un-normalization).",
        "",
        "| config | threads | Euler steps | p50 (ms) | p99 (ms) | student p50 (ms) | action head p50 (ms) "
        "| params (M) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['config']} | {r['threads']} | {r['euler_steps']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['student_p50_ms']} | {r['action_head_p50_ms']} | {r['parameters_m']} | {r['peak_rss_mb']} |"
        )
    lines += ["", f"Target: p50 <= 20 ms per chunk on one core. Calls per row: {report['calls']} "
              f"(+{report['warmup']} warm-up)."]
    by_config: dict[str, list[float]] = {}
    for r in report["results"]:
        by_config.setdefault(f"{r['config']} ({r['euler_steps']} Euler steps)", []).append(r["p50_ms"])
    for name, p50s in by_config.items():
        if len(p50s) > 1:
            lines.append(f"{name}: median p50 over {len(p50s)} processes {float(np.median(p50s)):.2f} ms "
                         f"(range {min(p50s)} to {max(p50s)}).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", action="append", default=None, help="preset name(s) or YAML file(s) (default: default)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--euler-steps", type=int, default=None, help="override action_head.num_inference_steps")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per configuration")
    parser.add_argument("--out", default=str(RESULTS / "inference_perf"), help="results path without suffix")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    configs = args.config or ["default"]
    if args.child:
        args.config = configs[0]
        child(args)
        return
    import torch

    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    for config in [c for c in configs for _ in range(args.repeats)]:
        cmd = [sys.executable, __file__, "--child", "--config", config, "--threads", str(args.threads),
               "--calls", str(args.calls), "--warmup", str(args.warmup)]
        if args.euler_steps:
            cmd += ["--euler-steps", str(args.euler_steps)]
        output = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    report = {
        "command": "python benchmarks/bench_inference.py " + shlex.join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "calls": args.calls,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
    }
    write_report_files(args.out, report, markdown(report))


if __name__ == "__main__":
    main()
