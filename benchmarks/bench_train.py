"""Training throughput: samples/s of the default configuration (a frozen pretrained encoder with its features
cached) and of the ViT preset with a frozen or an EMA target, with and without the caches, plus peak memory.

Each configuration runs in a fresh child process (so its peak RSS is its own): build the trainer (data windows,
model, latent cache if any), run ``--warmup`` optimizer steps untimed, then time ``--steps`` optimizer steps of
the robot:video 1:1 mixture with the preset's ``train:`` settings (batch 32). Data: synthetic 96x96 LeRobot and
video sets written on the fly (the model's cost does not depend on pixel content), or ``--robot``/``--video``.

Configurations:
- ``default``: the ``default`` preset as is: the student's vision and the frozen target are one frozen ImageNet
  EfficientNet-Lite0 whose features of every frame are cached once (``latent_cache: disk``), so a step runs neither
  encoder (the student reads the current frame's cached features); frozen MiniLM instructions;
- ``default-no-cache``: the same encoder run on every frame of every batch (the feature cache's speed-up);
- ``vit``: the ``vit`` preset (a ViT trained from scratch) with a frozen target (random weights here; a pretrained
  one costs the same) whose latents are precomputed once;
- ``vit-1-worker``: the same with one DataLoader worker process (loading overlaps compute);
- ``vit-no-cache``: the frozen target encoding every future frame at every step (the latent cache's speed-up);
- ``vit-ema``: the EMA target (the student's vision encoder's moving average), which cannot be cached.

Writes ``benchmarks/results/perf/train_perf.json`` and ``.md`` (with the exact command and the machine's load).

    python benchmarks/bench_train.py              # ~3-5 min on 2 cores
    python benchmarks/bench_train.py --quick      # 1 timed step per configuration (smoke test)
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
import tempfile
import time
from pathlib import Path

from vlajepa.presets import preset_path

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: import sibling scripts as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.synthetic import write_robot_dataset, write_video_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "perf"
CONFIG = preset_path("default")  # its data interface (image size, camera, batch) is every configuration's
CONFIGURATIONS = {
    "default": {"preset": "default", "target": "frozen", "latent_cache": "disk", "workers": 0},
    "default-no-cache": {"preset": "default", "target": "frozen", "latent_cache": "off", "workers": 0},
    "vit": {"preset": "vit", "target": "frozen", "latent_cache": "disk", "workers": 0},
    "vit-1-worker": {"preset": "vit", "target": "frozen", "latent_cache": "disk", "workers": 1},
    "vit-no-cache": {"preset": "vit", "target": "frozen", "latent_cache": "off", "workers": 0},
    "vit-ema": {"preset": "vit", "target": "ema", "latent_cache": "off", "workers": 0},
}
SPEEDUPS = {  # report key: (cached configuration, the same without the cache)
    "feature_cache_speedup": ("default", "default-no-cache"),
    "latent_cache_speedup": ("vit", "vit-no-cache"),
}


def time_train_steps(trainer, warmup: int, steps: int) -> dict:
    """Run ``warmup`` untimed optimizer steps, then time ``steps`` more: samples, samples/s, median step time."""
    for _ in range(warmup):
        trainer.train_step()
    samples, step_times = 0, []
    for _ in range(steps):
        step_start = time.perf_counter()
        samples += trainer.train_step()["samples"]
        step_times.append(time.perf_counter() - step_start)
    return {
        "timed_steps": steps,
        "samples": int(samples),
        "samples_per_s": round(samples / sum(step_times), 2),
        "step_s_median": round(sorted(step_times)[len(step_times) // 2], 3),
    }


def child(args: argparse.Namespace) -> None:
    """One configuration: print a JSON line with setup time, throughput and peak memory."""
    import torch

    from vlajepa.nn.config import TargetConfig
    from vlajepa.policies.vla_jepa import VLAJEPAConfig
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    spec = CONFIGURATIONS[args.child]
    preset = preset_path(spec["preset"])
    model_config = VLAJEPAConfig.from_yaml(preset)
    if spec["preset"] == "vit":  # a frozen target of random weights (no pretrain-encoder step), or the EMA one
        target = TargetConfig(kind="frozen", seed=0) if spec["target"] == "frozen" else TargetConfig(kind="ema")
        model_config = model_config.replace(target=target)
    train_config = TrainConfig.from_yaml(preset).replace(
        robot=args.robot,
        video=args.video,
        tensorboard=False,
        num_workers=spec["workers"],
        latent_cache=spec["latent_cache"],
        latent_cache_dir=str(Path(args.work) / "latent_cache"),
    )
    started = time.perf_counter()
    trainer = Trainer(model_config, train_config, Path(args.work) / args.child, progress=False)
    setup_s = time.perf_counter() - started
    timing = time_train_steps(trainer, args.warmup, args.steps)
    trainer.loader.close()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "configuration": args.child,
        **spec,
        "vision": model_config.vision.backbone,
        "setup_s": round(setup_s, 2),
        **timing,
        "peak_rss_mb": round(own, 1),
        "peak_rss_worker_mb": round(workers, 1) if spec["workers"] else None,
        "latent_cache_frames": sum(len(cache) for cache in trainer.caches.values()) or None,
    }
    print(json.dumps(result), flush=True)


def write_data(work: Path) -> tuple[str, str]:
    """Synthetic 96x96 robot (10 x 80 frames) and video (20 x 80 frames) sets for the default camera."""
    from vlajepa.policies.vla_jepa import VLAJEPAConfig

    config = VLAJEPAConfig.from_yaml(CONFIG)
    size, camera = config.image_size, config.cameras[0]
    robot = write_robot_dataset(work / "robot", [80] * 10, size=size, camera=camera)
    video = write_video_set(work / "video", [80] * 20, size=size)
    return str(robot), str(video)


def markdown(report: dict) -> str:
    lines = [
        "# Training throughput",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, torch {report['machine']['torch']}, "
        f"{report['threads']} torch thread(s) per process; load average before / after: "
        f"{report['load_before']} / {report['load_after']} (other work on the machine slows every number).",
        f"Model: the preset each configuration names ({report['image_size']} px, T={report['clip_length']}); "
        f"batch {report['batch_size']} per optimizer step, robot:video 1:1 alternating; "
        f"{report['warmup']} warm-up + {report['steps']} timed steps per configuration. Data: {report['data']}.",
        "",
        "| configuration | vision | target | latent cache | workers | samples/s | median step (s) | setup (s) | "
        "peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        rss = f"{r['peak_rss_mb']}" + (f" (+{r['peak_rss_worker_mb']} worker)" if r["peak_rss_worker_mb"] else "")
        lines.append(
            f"| {r['configuration']} | {r['vision']} | {r['target']} | {r['latent_cache']} | {r['workers']} "
            f"| {r['samples_per_s']} "
            f"| {r['step_s_median']} | {r['setup_s']} | {rss} |"
        )
    for key, (cached, uncached) in SPEEDUPS.items():
        if key in report:
            lines += [
                "",
                f"{key.replace('_', ' ').capitalize()}: x{report[key]} samples/s ({cached} against "
                f"{uncached}); setup includes building the cache.",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default=None, help="LeRobot dataset (default: synthetic)")
    parser.add_argument("--video", default=None, help="video set (default: synthetic)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="comma-separated subset")
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 1 timed step (smoke test)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 1, 1
    if args.child:
        child(args)
        return

    import torch

    from vlajepa.io_utils import write_report_files
    from vlajepa.train.config import TrainConfig

    command = shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        synthetic = args.robot is None or args.video is None
        robot, video = write_data(work) if synthetic else (args.robot, args.video)
        load_before = [round(x, 2) for x in os.getloadavg()]
        results = []
        for name in args.configurations.split(","):
            child_command = [
                sys.executable, __file__, "--child", name, "--robot", robot, "--video", video, "--work", tmp,
                "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
            ]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(child_command, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                raise SystemExit(f"configuration {name} failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(result))
            results.append(result)
        load_after = [round(x, 2) for x in os.getloadavg()]

    from vlajepa.policies.vla_jepa import VLAJEPAConfig

    model = VLAJEPAConfig.from_yaml(CONFIG)
    by_name = {r["configuration"]: r for r in results}
    report = {
        "command": command,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_after,
        "batch_size": TrainConfig.from_yaml(CONFIG).batch_size,
        "image_size": model.image_size,
        "clip_length": model.clip_length,
        "warmup": args.warmup,
        "steps": args.steps,
        "data": "synthetic: robot 10 episodes x 80 frames, video 20 clips x 80 frames"
        if synthetic
        else f"robot {args.robot}, video {args.video}",
        "results": results,
    }
    for key, (cached, uncached) in SPEEDUPS.items():
        if cached in by_name and uncached in by_name:
            report[key] = round(by_name[cached]["samples_per_s"] / by_name[uncached]["samples_per_s"], 2)
    out = Path(args.out)
    write_report_files(out / "train_perf", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
