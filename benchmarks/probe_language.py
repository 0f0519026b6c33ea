"""Language probe: does a policy read a held-out paraphrase as the same task as its training instructions?

The ``language`` perturbation of the MT10 benchmark swaps the instruction for a paraphrase never seen in training.
A rollout only says whether the episode succeeded; this probe looks at the policy's output directly. For
observations from expert rollouts of every task (several phases of each episode), it predicts the action chunk
under every instruction with one shared noise draw, so any difference between the chunks comes from the
instruction alone. For each observation and instruction set:

* ``own`` reference: the mean normalized chunk over the task's *training* paraphrases;
* per other task: the mean chunk over that task's training paraphrases;
* per held-out paraphrase: its chunk, assigned to the nearest of the ten task references.

Reported per checkpoint (and per task): the **paraphrase accuracy** (held-out chunks nearest to their own task),
the **language sensitivity** (mean distance between the own reference and the other tasks' references: how much the
instruction moves the actions at all) and the **paraphrase drift** (mean distance of held-out chunks from the own
reference, relative to that sensitivity). Distances are RMS over the normalized chunk. Results:
``<out>.json`` and ``<out>.md``.

    python benchmarks/probe_language.py --checkpoint bc=outputs/mt10_steps2000/bc/checkpoints/last \\
        --checkpoint vla-jepa-cotrain=outputs/mt10_steps2000/cotrain-frozen/checkpoints/last \\
        --out benchmarks/results/language/mt10_language_probe
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlajepa.commands.evaluate import named_checkpoint
from vlajepa.constants import TASK
from vlajepa.envs.language import LANGUAGE
from vlajepa.envs.metaworld_env import MetaWorldEnv
from vlajepa.envs.tasks import MT10
from vlajepa.eval.report import current_command
from vlajepa.io_utils import write_report_files
from vlajepa.policies.vla_jepa import VLAJEPAPolicy


@dataclass
class TaskProbe:
    """One checkpoint's probe numbers for one task."""

    task: str
    observations: int
    paraphrases: int
    accuracy: float  # fraction of held-out chunks nearest to the task's own reference
    sensitivity: float  # mean RMS distance own reference <-> other tasks' references
    drift: float  # mean RMS distance held-out chunk <-> own reference
    confused_with: dict[str, int]  # wrong nearest task -> count


def observations(task: str, seeds: list[int], phases: list[int], image_size: int) -> list[dict]:
    """Canonical-instruction observations of expert rollouts of ``task`` after each of ``phases`` steps."""
    env = MetaWorldEnv(task, image_size=image_size)
    frames = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            for step in range(max(phases) + 1):
                if step in phases:
                    frames.append(obs)
                obs, _, done, truncated, _ = env.step(env.expert_action())
                if done or truncated:
                    break
    finally:
        env.close()
    return frames


def chunks(policy: VLAJEPAPolicy, observation: dict, instructions: list[str], noise: torch.Tensor) -> np.ndarray:
    """Normalized chunks ``(n, H, A)`` for one observation under each instruction, all from the same noise."""
    batch = policy.processor.preprocess([observation])
    n = len(instructions)
    batch = {key: value.expand(n, *value.shape[1:]) for key, value in batch.items() if key != TASK}
    batch[TASK] = instructions
    with torch.inference_mode():
        out = policy.predict_action(batch, policy.num_inference_steps, noise=noise.expand(n, -1, -1))
    return out.double().numpy()


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def probe(policy: VLAJEPAPolicy, frames: dict[str, list[dict]], seed: int) -> list[TaskProbe]:
    tasks = list(frames)
    train = {task: list(LANGUAGE[task].train) for task in tasks}
    train_instructions = [text for task in tasks for text in train[task]]  # every task's, in task order
    generator = torch.Generator().manual_seed(seed)
    config = policy.config
    results = []
    for task in tasks:
        heldout = list(LANGUAGE[task].heldout)
        correct = total = 0
        sensitivity, drift = [], []
        confused: dict[str, int] = {}
        for observation in frames[task]:
            noise = torch.randn(1, config.chunk_size, config.action_dim, generator=generator)
            out = chunks(policy, observation, train_instructions + heldout, noise)
            refs, start = {}, 0
            for other in tasks:
                refs[other] = out[start : start + len(train[other])].mean(0)
                start += len(train[other])
            sensitivity.append(np.mean([rms(refs[task], refs[other]) for other in tasks if other != task]))
            for chunk in out[start:]:
                nearest = min(tasks, key=lambda other: rms(chunk, refs[other]))
                correct += nearest == task
                total += 1
                drift.append(rms(chunk, refs[task]))
                if nearest != task:
                    confused[nearest] = confused.get(nearest, 0) + 1
        results.append(
            TaskProbe(
                task=task,
                observations=len(frames[task]),
                paraphrases=len(heldout),
                accuracy=correct / total,
                sensitivity=float(np.mean(sensitivity)),
                drift=float(np.mean(drift)),
                confused_with=confused,
            )
        )
    return results


def summary(rows: list[TaskProbe]) -> dict[str, float]:
    correct = sum(r.accuracy * r.observations * r.paraphrases for r in rows)
    total = sum(r.observations * r.paraphrases for r in rows)
    sensitivity = float(np.mean([r.sensitivity for r in rows]))
    drift = float(np.mean([r.drift for r in rows]))
    return {
        "accuracy": correct / total,
        "chunks": total,
        "sensitivity": sensitivity,
        "drift": drift,
        "relative_drift": drift / sensitivity,
    }


def markdown(report: dict) -> str:
    lines = [
        "# Language probe: held-out paraphrases vs training instructions",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']:.0f} s. Observations: expert rollouts of each task from seeds "
        f"{report['seeds']} after {report['phases']} steps; one shared noise draw per observation. Accuracy: held-out "
        "paraphrase chunks whose nearest task reference (mean chunk over a task's training paraphrases) is their own "
        "task. Sensitivity: mean RMS distance between the own and the other tasks' references (normalized actions). "
        "Drift: mean RMS distance of held-out chunks from the own reference; relative drift = drift / sensitivity.",
        "",
        "| checkpoint | paraphrase accuracy | chunks | sensitivity | drift | relative drift |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in report["checkpoints"].items():
        s = result["summary"]
        lines.append(
            f"| {name} | {100 * s['accuracy']:.1f} % | {s['chunks']} | {s['sensitivity']:.3f} | {s['drift']:.3f} "
            f"| {s['relative_drift']:.2f} |"
        )
    lines += ["", "## Per task", "", "| checkpoint | task | accuracy | sensitivity | drift | confused with |"]
    lines.append("|---|---|---|---|---|---|")
    for name, result in report["checkpoints"].items():
        for r in result["tasks"]:
            confused = ", ".join(f"{k} ({v})" for k, v in sorted(r["confused_with"].items(), key=lambda kv: -kv[1]))
            lines.append(
                f"| {name} | {r['task']} | {100 * r['accuracy']:.0f} % | {r['sensitivity']:.3f} | {r['drift']:.3f} "
                f"| {confused or '-'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH", type=named_checkpoint)
    parser.add_argument("--seeds", type=int, nargs="+", default=[70_000, 70_001, 70_002, 70_003])
    parser.add_argument("--phases", type=int, nargs="+", default=[0, 15, 30, 60], help="expert steps before a frame")
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="results prefix (.json and .md are added)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    checkpoints = dict(args.checkpoint)
    policies = {name: VLAJEPAPolicy.from_pretrained(path) for name, path in checkpoints.items()}
    image_size = next(iter(policies.values())).config.image_size
    frames = {
        task: observations(task, args.seeds, args.phases, image_size) for task in tqdm(MT10, desc="observations")
    }

    report: dict = {"command": current_command(), "seeds": args.seeds, "phases": args.phases, "checkpoints": {}}
    for name, policy in tqdm(policies.items(), desc="checkpoints"):
        rows = probe(policy, frames, args.noise_seed)
        report["checkpoints"][name] = {
            "path": checkpoints[name],
            "summary": summary(rows),
            "tasks": [asdict(r) for r in rows],
        }
    report["wall_time_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    write_report_files(out, report, text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
