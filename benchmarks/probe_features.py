"""Do a vision encoder's features say where things are? A position probe on training and held-out layouts.

The pixel policy fails where it has to aim (README: with object and goal positions given as state the same policy
roughly doubles its success). This script asks the question one level down, of the vision encoder alone: train a
small head to predict the scene state (``observation.environment_state``: both objects' and the goal's xyz) from an
encoder's patch tokens on the frames of a training dataset, and measure its error on demonstrations from other
seeds, hence other layouts. Two modes per encoder:

* frozen (default): the encoder's tokens are computed once and only the head (LayerNorm, Linear to 256, GELU,
  Linear) is trained: how much position the representation already carries, in a form a small head can read;
* ``--finetune NAME``: the encoder is trained with the head (random image shift as in policy training): the
  supervised reference, what this architecture can learn from these frames when told the positions directly.
  ``--save-encoder NAME=PATH`` writes such an encoder in ``pretrain-encoder``'s format (``vlajepa train
  --init-vision``), for diagnostics only: it was trained on privileged labels.

Encoders (``--encoder NAME=SOURCE``): ``random`` (a fresh encoder of the ``--config`` architecture), an
``encoder.safetensors`` written by ``vlajepa pretrain-encoder`` (its ``encoder_config.json`` beside it gives the
architecture), or a policy checkpoint folder (its student's vision encoder). Errors are reported as
mean absolute error per axis in cm per task and moving part, beside the error
of always answering the task's mean position.

    python benchmarks/probe_features.py --encoder random=random \\
        --encoder jepa=outputs/s11/lossless/encoder/encoder.safetensors \\
        --encoder bc=outputs/s11/lossless/bc/checkpoints/last \\
        --train data/mt10_96px_robot_10_envstate --heldout data/heldout_mt10_96px_robot_10_envstate \\
        --out benchmarks/results/feature_probe/mt10_feature_probe
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from vlajepa.checkpoint import WEIGHTS_FILE, load_safetensors
from vlajepa.constants import OBS_ENV_STATE, TASK
from vlajepa.data.lerobot import LeRobotDataset
from vlajepa.envs.language import task_of_instruction
from vlajepa.eval.report import current_command
from vlajepa.io_utils import atomic_write_json, write_report_files
from vlajepa.nn.config import VisionConfig
from vlajepa.nn.target import load_encoder, save_encoder
from vlajepa.nn.vision import VisionEncoder
from vlajepa.policies import load_policy_config
from vlajepa.policies.vla_jepa import VLAJEPAConfig
from vlajepa.presets import preset_path
from vlajepa.train.augment import random_shift

STUDENT_VISION = "student.vision."



PARTS = ("obj1", "obj2", "goal")
MOVING_CM = 0.1  # a part whose position varies less than this (std, cm) over a task's training frames is left out


def report_for(train: dict, heldout: dict) -> dict[str, dict]:
    """Per task and moving part: frames and mean absolute error per axis (cm) of the head and the mean baseline."""
    report = {}
    for task in train:
        mean = train[task]["label"].mean(axis=0)
        spread = train[task]["label"].std(axis=0) * 100
        parts = {}
        for i, part in enumerate(PARTS):
            axes = slice(3 * i, 3 * i + 3)
            if spread[axes].max() < MOVING_CM:
                continue

            def cm(error: np.ndarray, axes=axes) -> list[float]:
                return (np.abs(error[:, axes]).mean(axis=0) * 100).round(2).tolist()

            parts[part] = {
                "train": cm(train[task]["predicted"] - train[task]["label"]),
                "heldout": cm(heldout[task]["predicted"] - heldout[task]["label"]) if task in heldout else None,
                "heldout_mean_baseline": cm(mean - heldout[task]["label"]) if task in heldout else None,
                "train_spread_std": spread[axes].round(2).tolist(),
            }
        report[task] = {
            "frames": {"train": len(train[task]["label"]), "heldout": len(heldout.get(task, {}).get("label", []))},
            "parts": parts,
        }
    return report


def _xyz(values: list[float] | None) -> str:
    return "–" if values is None else " / ".join(f"{v:.1f}" for v in values)


def pooled(tasks: dict) -> dict[str, list[float]]:
    """Mean over every (task, moving part) cell of each error column, per axis."""
    out = {}
    for column in ("train", "heldout", "heldout_mean_baseline"):
        cells = [p[column] for r in tasks.values() for p in r["parts"].values() if p[column] is not None]
        out[column] = np.mean(cells, axis=0).round(2).tolist() if cells else None
    return out


def position_head(num_tokens: int, dim: int, out_dim: int, hidden: int) -> nn.Module:
    """The probe: an MLP over all of a frame's patch tokens at once ``(b, n, d) -> (b, out_dim)``."""
    return nn.Sequential(
        nn.Flatten(start_dim=1),
        nn.LayerNorm(num_tokens * dim),
        nn.Linear(num_tokens * dim, hidden),
        nn.GELU(),
        nn.Linear(hidden, out_dim),
    )

def load_frames(root: str, stride: int) -> tuple[Tensor, np.ndarray, list[str]]:
    """Every ``stride``-th frame of ``root``: uint8 images ``(n, 3, h, w)``, scene states ``(n, 9)`` (m), tasks."""
    dataset = LeRobotDataset(root)
    if OBS_ENV_STATE not in dataset.meta.features:
        raise SystemExit(f"{root}: no {OBS_ENV_STATE} (collect with `vlajepa collect robot --environment-state`)")
    key = dataset.meta.video_keys[0]
    rows = range(0, len(dataset), stride)
    images, tasks = [], []
    for row in tqdm(rows, desc=Path(root).name, unit="frame"):
        sample = dataset[row]
        images.append((sample[key] * 255).round().to(torch.uint8))
        tasks.append(task_of_instruction(sample[TASK]) or sample[TASK])
    states = np.asarray(dataset.column(OBS_ENV_STATE), dtype=np.float64)[list(rows)]
    return torch.stack(images), states, tasks


def build_encoder(source: str, config_path: str, image_size: int) -> tuple[VisionEncoder, VisionConfig]:
    """The encoder ``source`` names (see the module docstring), in eval mode, and its architecture."""
    path = Path(source)
    if source == "random":
        vision = VLAJEPAConfig.from_yaml(preset_path(config_path)).vision
        encoder = VisionEncoder(vision, image_size)
    elif path.is_dir():
        config = load_policy_config(path)
        vision = config.vision
        encoder = VisionEncoder(vision, config.image_size)
        state = load_safetensors(Path(path) / WEIGHTS_FILE)
        encoder.load_state_dict({k[len(STUDENT_VISION) :]: v for k, v in state.items() if k.startswith(STUDENT_VISION)})
    elif path.is_file():
        meta = json.loads((path.parent / "encoder_config.json").read_text(encoding="utf-8"))
        vision = VisionConfig(**meta["pretrain"]["vision"])
        encoder = VisionEncoder(vision, meta["pretrain"]["image_size"])
        load_encoder(encoder, path, role="probed encoder")
    else:
        raise SystemExit(f"--encoder {source}: not 'random', an encoder.safetensors or a checkpoint folder")
    return encoder.eval(), vision


def save_probed_encoder(encoder: VisionEncoder, vision: VisionConfig, path: Path, source: str, command: str) -> None:
    """Weights in ``pretrain-encoder``'s format, with an ``encoder_config.json`` that says how they were made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(encoder, path)
    meta = {"pretrain": {"image_size": encoder.image_size, "vision": dataclasses.asdict(vision)},
            "made_by": "benchmarks/probe_features.py --finetune: supervised on simulator positions (a diagnostic)",
            "initialized_from": source, "command": command}
    atomic_write_json(path.parent / "encoder_config.json", meta)


def encode(encoder: VisionEncoder, images: Tensor, batch_size: int = 128) -> Tensor:
    with torch.inference_mode():
        return torch.cat([encoder(images[i : i + batch_size].float() / 255) for i in range(0, len(images), batch_size)])


def train_probe(
    encoder: VisionEncoder, images: Tensor, target: Tensor, *, finetune: bool, steps: int, batch_size: int,
    lr: float, shift: int, seed: int,
) -> Callable[[Tensor], Tensor]:
    """Fit head (and, with ``finetune``, encoder) to ``target`` (normalized); return image -> normalized state."""
    torch.manual_seed(seed)
    head = position_head(encoder.num_patches, encoder.dim, target.shape[1], hidden=256)
    features = None if finetune else encode(encoder, images)
    params = list(head.parameters()) + (list(encoder.parameters()) if finetune else [])
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    encoder.train(finetune)
    for _ in tqdm(range(steps), desc="finetune" if finetune else "probe", unit="step"):
        rows = torch.randint(0, len(images), (batch_size,))
        if finetune:
            tokens = encoder(random_shift(images[rows].float() / 255, shift))
        else:
            tokens = features[rows]
        loss = nn.functional.mse_loss(head(tokens), target[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    encoder.eval()
    head.eval()

    def predict(frames: Tensor) -> Tensor:
        with torch.inference_mode():
            return head(encode(encoder, frames))

    return predict


def by_task(predicted: np.ndarray, label: np.ndarray, tasks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, list]] = defaultdict(lambda: {"predicted": [], "label": []})
    for p, y, task in zip(predicted, label, tasks, strict=True):
        out[task]["predicted"].append(p)
        out[task]["label"].append(y)
    return {task: {k: np.stack(v) for k, v in parts.items()} for task, parts in out.items()}


def markdown(report: dict) -> str:
    lines = [
        "# Do the encoder's features say where things are? Position probe on training and held-out layouts",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']} s. A head (LayerNorm, Linear 256, GELU, Linear) trained for "
        f"{report['steps']} steps to predict both objects' and the goal's position from the encoder's patch tokens "
        "(frozen: only the head is trained; fine-tuned: the encoder too, with random image shift). Mean absolute "
        "error in cm, x / y / z, averaged over every task's moving parts; the baseline always answers the task's "
        f"mean position over the training frames. Training frames: `{report['train']}` (every "
        f"{report['stride']}th); held-out: `{report['heldout']}` (other seeds, so other layouts).",
        "",
        "| encoder | mode | training frames | held-out frames | held-out mean baseline |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["encoders"].items():
        p = entry["pooled"]
        lines.append(
            f"| {name} | {entry['mode']} | {_xyz(p['train'])} | {_xyz(p['heldout'])} | "
            f"{_xyz(p['heldout_mean_baseline'])} |"
        )
    lines += ["", "Per task (held-out error, mean over the task's moving parts and axes, cm):", ""]
    names = list(report["encoders"])
    lines += ["| task | " + " | ".join(names) + " | mean baseline |", "|---" * (len(names) + 2) + "|"]
    first = report["encoders"][names[0]]["tasks"]
    def cell(parts: dict, column: str) -> str:
        values = [p[column] for p in parts.values() if p[column] is not None]
        return f"{np.mean(values):.1f}" if values else "–"

    for task in first:
        cells = [cell(report["encoders"][n]["tasks"][task]["parts"], "heldout") for n in names]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {cell(first[task]['parts'], 'heldout_mean_baseline')} |")
    return "\n".join(lines) + "\n"


def named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", action="append", required=True, type=named, metavar="NAME=SOURCE",
                        help="random | an encoder.safetensors | a checkpoint folder (repeat)")
    parser.add_argument("--finetune", action="append", default=[], metavar="NAME",
                        help="train this encoder with the head instead of freezing it (repeat)")
    parser.add_argument("--save-encoder", action="append", default=[], type=named, metavar="NAME=PATH",
                        help="write a fine-tuned encoder here (pretrain-encoder format)")
    parser.add_argument("--train", required=True, help="dataset with observation.environment_state to fit on")
    parser.add_argument("--heldout", required=True, help="the same label on demonstrations from other seeds")
    parser.add_argument("--config", default="vit", help="preset or YAML file: a random ViT encoder's shape")
    parser.add_argument("--stride", type=int, default=2, help="use every k-th training frame (held-out: 2k)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--shift", type=int, default=4, help="fine-tuning: random image shift in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="output prefix for .json and .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [name for name, _ in args.encoder]
    for name in args.finetune + [name for name, _ in args.save_encoder]:
        if name not in names:
            raise SystemExit(f"--finetune/--save-encoder {name}: no --encoder of that name")
    start = time.perf_counter()
    train_images, train_states, train_tasks = load_frames(args.train, args.stride)
    heldout_images, heldout_states, heldout_tasks = load_frames(args.heldout, 2 * args.stride)
    mean, std = train_states.mean(axis=0), np.maximum(train_states.std(axis=0), 1e-4)
    target = torch.from_numpy((train_states - mean) / std).float()
    saves = dict(args.save_encoder)
    encoders = {}
    for name, source in args.encoder:
        encoder, vision = build_encoder(source, args.config, train_images.shape[-1])
        finetune = name in args.finetune
        predict = train_probe(encoder, train_images, target, finetune=finetune, steps=args.steps,
                              batch_size=args.batch_size, lr=args.lr, shift=args.shift, seed=args.seed)
        if name in saves:
            save_probed_encoder(encoder, vision, Path(saves[name]), source, current_command())
        train = by_task(predict(train_images).double().numpy() * std + mean, train_states, train_tasks)
        heldout = by_task(predict(heldout_images).double().numpy() * std + mean, heldout_states, heldout_tasks)
        tasks = report_for(train, heldout)
        encoders[name] = {"source": source, "mode": "fine-tuned" if finetune else "frozen", "tasks": tasks,
                          "pooled": pooled(tasks)}
    report = {"command": current_command(), "wall_time_s": round(time.perf_counter() - start, 1),
              "train": args.train, "heldout": args.heldout, "stride": args.stride, "steps": args.steps,
              "encoders": encoders}
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
