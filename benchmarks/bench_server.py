"""Load benchmark of the policy server on loopback: throughput and p50/p99 latency for 1, 4 and 8 clients.

Each configuration starts a fresh server process (``vlajepa serve``'s code path) on 127.0.0.1, then runs N
closed-loop clients (each sends a request as soon as its previous reply arrives) for a bounded number of
requests and a bounded time. Two server modes are compared:

- ``serial``: ``max_batch=1``, one forward pass per request (the default; reproducible per connection);
- ``batched``: ``max_batch=8``, requests waiting together share one forward pass
  (``VLAJEPAPolicy.predict_action_chunk_batch``).

The model is a tiny randomly initialized checkpoint (the ``tiny`` preset) unless ``--checkpoint`` is given;
requests carry a 96x96 image (the evaluation harness's size, resized by the policy), a 4-D state and a prompt.
Writes ``benchmarks/results/perf/server_load.json`` and ``.md``.

    python benchmarks/bench_server.py            # full run (~2-4 min on 2 cores)
    python benchmarks/bench_server.py --quick    # a few requests per configuration (smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vlajepa.constants import OBS_STATE, TASK
from vlajepa.io_utils import with_extension, write_report_files
from vlajepa.serve import Client, PolicyServer, ServerConfig, load_served_policy

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: import sibling scripts as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "perf"
KEY = "observation.images.corner2"


def random_observation(seed: int) -> dict:
    """A 96 px observation with openpi's prompt key (the content is random: load does not depend on it)."""
    rng = np.random.default_rng(seed)
    return {
        KEY: rng.integers(0, 256, (96, 96, 3), dtype=np.uint8),
        OBS_STATE: rng.normal(size=4).astype(np.float32),
        "prompt": "push the puck to the goal",
    }


def serve(args: argparse.Namespace) -> None:
    """Server process: load, print the port, serve until stdin closes."""
    torch.set_num_threads(args.threads)
    loaded = load_served_policy(args.checkpoint)
    # Capacity is what is measured, so the per-connection request-rate limit is off.
    config = ServerConfig(host="127.0.0.1", port=0, max_batch=args.max_batch, max_requests_per_s=0)

    async def main() -> None:
        server = PolicyServer(loaded.policy, loaded.spec, config)
        await server.start()
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await server.close()

    asyncio.run(main())


def _client_loop(url: str, index: int, requests: int, deadline: float) -> list[tuple[float, float, int]]:
    """(send time, latency s, batch size) of each request of one closed-loop client."""
    samples = []
    observations = [random_observation(1000 * index + i) for i in range(4)]
    with Client(url) as client:
        client.infer(observations[0])  # warm-up (first call pays allocation and caches)
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            reply = client.infer(observations[i % len(observations)])
            batch_size = int(reply["server_timing"]["batch_size"])
            samples.append((started, time.perf_counter() - started, batch_size))
    return samples


def run_configuration(
    checkpoint: Path, mode: str, clients: int, requests: int, time_cap_s: float, threads: int
) -> dict:
    max_batch = 8 if mode == "batched" else 1
    command = [sys.executable, __file__, "--serve", "--checkpoint", str(checkpoint)]
    command += ["--max-batch", str(max_batch), "--threads", str(threads)]
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(server.stdout.readline())
        url = f"ws://127.0.0.1:{port}"
        barrier = threading.Barrier(clients)

        def client(i: int):
            barrier.wait(timeout=60)
            return _client_loop(url, i, requests, deadline)

        deadline = time.monotonic() + time_cap_s
        with ThreadPoolExecutor(clients) as pool:
            per_client = list(pool.map(client, range(clients)))
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    samples = [s for samples in per_client for s in samples]
    starts = [s[0] for s in samples]
    ends = [s[0] + s[1] for s in samples]
    latencies_ms = np.array([s[1] for s in samples]) * 1e3
    wall = max(ends) - min(starts)
    return {
        "mode": mode,
        "max_batch": max_batch,
        "clients": clients,
        "requests": len(samples),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(samples) / wall, 2),
        "latency_p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
        "latency_p99_ms": round(float(np.percentile(latencies_ms, 99)), 2),
        "latency_mean_ms": round(float(latencies_ms.mean()), 2),
        "mean_batch_size": round(float(np.mean([s[2] for s in samples])), 2),
    }


def in_process_baseline(checkpoint: Path, requests: int, threads: int) -> dict:
    """The policy alone, no server: what the server's overhead is measured against."""
    torch.set_num_threads(threads)
    policy = load_served_policy(checkpoint).policy
    observations = [{**o, TASK: o.pop("prompt")} for o in (random_observation(i) for i in range(4))]
    policy.predict_action_chunk(observations[0])
    times = []
    for i in range(requests):
        started = time.perf_counter()
        policy.predict_action_chunk(observations[i % 4])
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1e3
    return {"requests": requests, "latency_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "latency_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "throughput_rps": round(requests / float(np.sum(times)), 2)}  # fmt: skip


def _markdown(result: dict) -> str:
    lines = [
        "# Policy server load benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Wall time: {result['wall_time_s']:.0f} s  ",
        f"Model: {result['model']}  ",
        f"Machine: {result['machine']['cpus']} CPUs, load average before/after "
        f"{result['machine']['load_before']} / {result['machine']['load_after']}; server torch threads "
        f"{result['threads']}; clients and server share the machine, over 127.0.0.1.  ",
        f"Requests: closed-loop clients, up to {result['requests_per_client']} each (after one warm-up), "
        f"capped at {result['time_cap_s']} s per configuration; 96x96 uint8 image + 4-D state + prompt.",
        "",
        f"In-process baseline (policy alone, no server): p50 {result['in_process']['latency_p50_ms']} ms, "
        f"p99 {result['in_process']['latency_p99_ms']} ms, {result['in_process']['throughput_rps']} calls/s.",
        "",
        "| mode | max batch | clients | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(result["rows"], key=lambda r: (r["mode"] != "serial", r["clients"])):
        lines.append(
            f"| {row['mode']} | {row['max_batch']} | {row['clients']} | {row['requests']} | "
            f"{row['throughput_rps']} | {row['latency_p50_ms']} | {row['latency_p99_ms']} | "
            f"{row['mean_batch_size']} |"
        )
    lines += ["", result["notes"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: tiny, random)")
    parser.add_argument("--clients", default="1,4,8", help="client counts (default: 1,4,8)")
    parser.add_argument("--requests", type=int, default=150, help="requests per client (default: 150)")
    parser.add_argument("--time-cap", type=float, default=40.0, help="seconds per configuration")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="10 requests per client, 10 s cap, no files")
    parser.add_argument("--out", type=Path, default=RESULTS / "server_load", help="results path, no suffix")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: server process
    parser.add_argument("--max-batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.quick:
        args.requests, args.time_cap = 10, 10.0

    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, model = args.checkpoint, f"checkpoint {args.checkpoint}"
        if checkpoint is None:
            from benchmarks.synthetic import save_random_checkpoint
            from vlajepa.policies.vla_jepa import VLAJEPAConfig
            from vlajepa.presets import preset_path

            config = VLAJEPAConfig.from_yaml(preset_path("tiny"))
            checkpoint = save_random_checkpoint(Path(tmp) / "tiny", config)
            model = "tiny randomly initialized VLAJEPAPolicy (tiny preset, 32x32 input, 4 flow steps)"
        baseline = in_process_baseline(checkpoint, min(args.requests, 100), args.threads)
        print(f"in-process: {baseline}")
        rows = []
        # Modes alternate per client count, so both see the same background load on a shared machine.
        for clients in (int(c) for c in args.clients.split(",")):
            for mode in ("serial", "batched"):
                row = run_configuration(checkpoint, mode, clients, args.requests, args.time_cap, args.threads)
                print(json.dumps(row))
                rows.append(row)
    result = {
        "benchmark": "policy server load (loopback)",
        "command": shlex.join(["python", "benchmarks/bench_server.py", *sys.argv[1:]]),
        "wall_time_s": round(time.monotonic() - started, 1),
        "model": model,
        "threads": args.threads,
        "requests_per_client": args.requests,
        "time_cap_s": args.time_cap,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "in_process": baseline,
        "rows": rows,
        "notes": "Latency is measured by each client from send to reply (encode, loopback, queue, forward, "
        "decode). 'batched' replies are not reproducible per connection (one noise draw per batch); serial "
        "ones are, bit for bit.",
    }
    if args.quick:
        print(json.dumps(result, indent=2))
        return
    write_report_files(args.out, result, _markdown(result))
    print(f"wrote {with_extension(args.out, '.json')} and {with_extension(args.out, '.md')}")


if __name__ == "__main__":
    main()
