"""Foundation throughput: demonstrations per minute (1 vs 2 workers), evaluation episodes per minute, and LeRobot
reader random-access frames per second (no cache vs decode cache).

Ratios measured in this one run are what to compare; absolute numbers on a shared 2-core machine are noisy.
Writes benchmarks/results/perf/foundation_perf.json and .md.

    python benchmarks/bench_foundation.py [--tasks reach-v3,push-v3,drawer-open-v3,window-close-v3] [--episodes 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from vlajepa.collect import CollectConfig, collect_robot_dataset  # noqa: E402
from vlajepa.constants import ACTION, OBS_STATE  # noqa: E402
from vlajepa.data.lerobot import LeRobotDataset, LeRobotDatasetMetadata  # noqa: E402
from vlajepa.eval.policies import PolicySource  # noqa: E402
from vlajepa.eval.report import current_command  # noqa: E402
from vlajepa.eval.runner import EvalConfig, evaluate  # noqa: E402
from vlajepa.io_utils import write_report_files  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "perf"


def bench_collect(tasks: tuple[str, ...], episodes: int, workers: int, root: Path) -> dict:
    config = CollectConfig(tasks=tasks, episodes_per_task=episodes, workers=workers, seed=0)
    summary = collect_robot_dataset(config, root, progress=False)
    return {
        "workers": workers,
        "episodes": summary.episodes,
        "dropped": sum(summary.dropped.values()),
        "wall_time_s": round(summary.wall_time_s, 2),
        "demos_per_minute": round(summary.episodes_per_minute, 2),
    }


def bench_eval(tasks: tuple[str, ...], episodes: int, workers: int) -> dict:
    config = EvalConfig(tasks=tasks, episodes=episodes, workers=workers, seed=1_000_000)
    results, wall = evaluate(PolicySource("expert"), config, progress=False)
    steps = sum(r.length for r in results)
    return {
        "policy": "expert",
        "workers": workers,
        "episodes": len(results),
        "env_steps": steps,
        "wall_time_s": round(wall, 2),
        "episodes_per_minute": round(60 * len(results) / wall, 2),
        "env_steps_per_second": round(steps / wall, 1),
    }


def bench_reader(root: Path, samples: int, decode_cache: bool, seed: int = 0) -> dict:
    meta = LeRobotDatasetMetadata(root)
    # A training-like item: the current image plus a 4-frame future clip, an 8-step action chunk, the state.
    dataset = LeRobotDataset(
        root,
        delta_timestamps={
            **{key: [i * 4 / meta.fps for i in range(4)] for key in meta.video_keys},
            ACTION: [i / meta.fps for i in range(8)],
            OBS_STATE: [0.0],
        },
        decode_cache=decode_cache,
    )
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(dataset), size=samples)
    start = time.perf_counter()
    frames = 0
    for idx in indices:
        item = dataset[int(idx)]
        frames += sum(item[key].shape[0] for key in dataset.meta.video_keys)
    wall = time.perf_counter() - start
    return {
        "decode_cache": decode_cache,
        "samples": samples,
        "frames": frames,
        "wall_time_s": round(wall, 3),
        "samples_per_second": round(samples / wall, 1),
        "frames_per_second": round(frames / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="reach-v3,push-v3,drawer-open-v3,window-close-v3")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task (collection and evaluation)")
    parser.add_argument("--reader-samples", type=int, default=300)
    parser.add_argument("--out", default=str(RESULTS / "foundation_perf"))
    args = parser.parse_args()
    tasks = tuple(t.strip() for t in args.tasks.split(","))

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="vlajepa-bench-"))
    try:
        collect = [bench_collect(tasks, args.episodes, w, work / f"robot_w{w}") for w in (1, 2)]
        print("collect:", collect)
        evaluation = bench_eval(tasks, args.episodes, workers=2)
        print("eval:", evaluation)
        reader = [bench_reader(work / "robot_w2", args.reader_samples, cache) for cache in (False, True)]
        print("reader:", reader)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "command": current_command(),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count()},
        "tasks": list(tasks),
        "collect": collect,
        "collect_speedup_2_workers": round(collect[1]["demos_per_minute"] / collect[0]["demos_per_minute"], 2),
        "eval": evaluation,
        "reader": reader,
        "reader_cache_speedup": round(reader[1]["frames_per_second"] / reader[0]["frames_per_second"], 1),
    }
    lines = [
        "# Foundation throughput",
        "",
        f"Command: `{report['command']}` — wall time {report['wall_time_s']} s, {os.cpu_count()} CPUs, "
        f"tasks {', '.join(tasks)}.",
        "",
        "| measurement | value |",
        "|---|---|",
    ]
    for c in collect:
        lines.append(
            f"| demonstrations / minute, {c['workers']} worker(s) | {c['demos_per_minute']} "
            f"({c['episodes']} kept, {c['dropped']} dropped) |"
        )
    lines.append(
        f"| evaluation episodes / minute (expert, 2 workers) | {evaluation['episodes_per_minute']} "
        f"({evaluation['env_steps_per_second']} env steps/s) |"
    )
    for r in reader:
        label = "decode cache" if r["decode_cache"] else "no cache"
        lines.append(
            f"| reader random access, {label} | {r['frames_per_second']} frames/s "
            f"({r['samples_per_second']} samples/s) |"
        )
    write_report_files(args.out, report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
