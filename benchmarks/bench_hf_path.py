"""Training throughput and peak memory of the paper-scale path at tiny sizes on a CPU: a tiny random Hugging Face
VLM student (Qwen3-VL, Qwen2.5-VL, SmolVLM) with a tiny random V-JEPA 2 target, beside the native ``tiny`` preset.

Each configuration runs in a fresh child process (so its peak RSS is its own): build the trainer on a synthetic
32x32 LeRobot dataset, run ``--warmup`` optimizer steps untimed, then time ``--steps`` optimizer steps of robot
batches. The numbers are for the code path (processor, query tokens, per-frame target, trainer), not for the
published model sizes, which need a GPU.

Configurations:
- ``native-tiny``: the ``tiny`` preset (native student, EMA target);
- ``hf-qwen3_vl``: tiny Qwen3-VL student + tiny V-JEPA 2 target (encoding every batch: ``latent_cache: off``);
- ``hf-qwen2_5_vl``: the same with a tiny Qwen2.5-VL;
- ``hf-smolvlm``: the same with a tiny SmolVLM (one 64 px crop per image);
- ``hf-qwen3_vl-bf16``: ``hf-qwen3_vl`` under bf16 autocast (``train.precision: bf16``).

Writes ``benchmarks/results/paper_scale/hf_path_perf.json`` and ``.md``.

    python benchmarks/bench_hf_path.py            # ~1-2 min on 2 cores
    python benchmarks/bench_hf_path.py --quick    # 1 timed step per configuration (smoke test)
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

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: import sibling scripts as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_train import time_train_steps  # noqa: E402
from benchmarks.synthetic import write_robot_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper_scale"
CONFIGURATIONS = {
    "native-tiny": {"backbone": "native", "family": None, "precision": "fp32"},
    "hf-qwen3_vl": {"backbone": "hf_vlm", "family": "qwen3_vl", "precision": "fp32"},
    "hf-qwen2_5_vl": {"backbone": "hf_vlm", "family": "qwen2_5_vl", "precision": "fp32"},
    "hf-smolvlm": {"backbone": "hf_vlm", "family": "smolvlm", "precision": "fp32"},
    "hf-qwen3_vl-bf16": {"backbone": "hf_vlm", "family": "qwen3_vl", "precision": "bf16"},
}


def model_config(spec: dict):
    """The ``tiny`` preset's model, with a tiny VLM student and a tiny V-JEPA 2 target for the hf configurations."""
    import dataclasses

    from vlajepa.nn.config import HFVLMConfig, TargetConfig, VJEPA2TargetConfig
    from vlajepa.policies.vla_jepa import VLAJEPAConfig
    from vlajepa.presets import preset_path

    config = VLAJEPAConfig.from_yaml(preset_path("tiny"))
    if spec["backbone"] == "native":
        return config
    student = dataclasses.replace(
        config.student, use_state=False, backbone="hf_vlm", hf_vlm=HFVLMConfig(family=spec["family"])
    )
    target = TargetConfig(kind="vjepa2", vjepa2=VJEPA2TargetConfig(image_size=config.image_size))
    return config.replace(student=student, target=target)


def child(args: argparse.Namespace) -> None:
    """One configuration: print a JSON line with setup time, throughput and peak memory."""
    import torch

    from vlajepa.presets import preset_path
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    spec = CONFIGURATIONS[args.child]
    train_config = TrainConfig.from_yaml(preset_path("tiny")).replace(
        robot=args.robot, batch_size=args.batch_size, tensorboard=False, latent_cache="off",
        precision=spec["precision"], steps=args.warmup + args.steps + 1,
    )  # fmt: skip
    started = time.perf_counter()
    trainer = Trainer(model_config(spec), train_config, Path(args.work) / args.child, progress=False)
    setup_s = time.perf_counter() - started
    timing = time_train_steps(trainer, args.warmup, args.steps)
    trainer.loader.close()
    parameters = sum(p.numel() for p in trainer.policy.parameters())
    result = {
        "configuration": args.child,
        **spec,
        "parameters": parameters,
        "setup_s": round(setup_s, 2),
        **timing,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result), flush=True)


def markdown(report: dict) -> str:
    lines = [
        "# Paper-scale path at tiny sizes: training throughput on a CPU",
        "",
        f"Command: `{report['command']}` (commit `{report['git_commit']}`)",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, torch {report['machine']['torch']}, transformers "
        f"{report['machine']['transformers']}, {report['threads']} torch thread(s); load average before / after: "
        f"{report['load_before']} / {report['load_after']} (other work on the machine slows every number).",
        f"Model: the `tiny` preset (32 px, one camera, T=3); batch {report['batch_size']} robot windows per optimizer "
        f"step; {report['warmup']} warm-up + {report['steps']} timed steps per configuration. Data: {report['data']}.",
        "",
        "| configuration | student | target | precision | parameters | samples/s | median step (s) | setup (s) "
        "| peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        student = r["family"] or "native"
        target = "V-JEPA 2 (per frame)" if r["backbone"] == "hf_vlm" else "EMA"
        lines.append(
            f"| {r['configuration']} | {student} | {target} | {r['precision']} | {r['parameters']:,} "
            f"| {r['samples_per_s']} | {r['step_s_median']} | {r['setup_s']} | {r['peak_rss_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="robot windows per step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS), help="comma-separated subset")
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 1 timed step (smoke test)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--robot", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 1, 1
    if args.child:
        child(args)
        return

    import torch
    import transformers

    from vlajepa.io_utils import git_commit, write_report_files

    command = shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])
    with tempfile.TemporaryDirectory(prefix="bench_hf_") as tmp:
        robot = str(write_robot_dataset(Path(tmp) / "robot", [40] * 6, size=32, camera="corner2"))
        load_before = [round(x, 2) for x in os.getloadavg()]
        results = []
        for name in args.configurations.split(","):
            child_command = [
                sys.executable, __file__, "--child", name, "--robot", robot, "--work", tmp, "--steps", str(args.steps),
                "--warmup", str(args.warmup), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
            ]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(child_command, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                raise SystemExit(f"configuration {name} failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(result))
            results.append(result)
        load_after = [round(x, 2) for x in os.getloadavg()]
    report = {
        "command": command,
        "git_commit": git_commit() or "unknown",
        "data_revision": "none",  # synthetic data (benchmarks/results/README.md, data revisions)
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "transformers": transformers.__version__,
                    "python": platform.python_version()},  # fmt: skip
        "threads": args.threads,
        "load_before": load_before,
        "load_after": load_after,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "data": "synthetic LeRobot v3, 6 episodes x 40 frames, 32x32",
        "results": results,
    }
    write_report_files(Path(args.out) / "hf_path_perf", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
