"""A few training steps of the ``paper`` preset on one GPU: step time and peak GPU memory.

By default the preset's structure (two 224 px cameras, 8-D state, 7-D action, 24 latent-action and 32 embodied
queries, 7-step chunks, bf16 autocast) with tiny random networks, so it needs no weights. With ``--vlm-dir`` and
``--vjepa2-dir`` (local transformers folders of Qwen3-VL-2B-Instruct and vjepa2-vitl-fpc64-256) it runs the full
sizes. Random batches, no dataset: this checks that the path runs on the device and what it costs, not learning.

Run through ``scripts/gpu_smoke.sh``, which exits with a message when no GPU is present. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch


def paper_config(vlm_dir: str | None, vjepa2_dir: str | None):
    from vlajepa.config import PolicyConfig
    from vlajepa.presets import preset_path

    config = PolicyConfig.from_yaml(preset_path("paper"))
    student, target = config.student, config.target
    if vlm_dir:
        student = dataclasses.replace(student, hf_vlm=dataclasses.replace(student.hf_vlm, model_dir=vlm_dir))
    else:  # tiny random VLM, narrow projections
        student = dataclasses.replace(student, dim=64, hf_vlm=dataclasses.replace(student.hf_vlm, size="tiny"))
    if vjepa2_dir:
        target = dataclasses.replace(target, vjepa2=dataclasses.replace(target.vjepa2, model_dir=vjepa2_dir))
    else:
        target = dataclasses.replace(target, vjepa2=dataclasses.replace(target.vjepa2, size="tiny"))
    changes = {"student": student, "target": target}
    if not vlm_dir:
        changes["predictor"] = dataclasses.replace(config.predictor, dim=64, depth=2, heads=2)
        changes["action_head"] = dataclasses.replace(config.action_head, dim=64, depth=2, heads=2)
    return config.replace(**changes)


def random_batch(config, batch_size: int, device: torch.device) -> dict:
    from vlajepa.constants import ACTION, ACTION_IS_PAD, OBS_STATE, TASK, future_image_key, image_key

    size, steps = config.image_size, config.clip_length
    batch = {TASK: ["put the bowl on the plate"] * batch_size}
    for camera in config.cameras:
        clip = torch.rand(batch_size, steps, 3, size, size, device=device)
        batch[image_key(camera)], batch[future_image_key(camera)] = clip[:, 0].clone(), clip
    batch[OBS_STATE] = torch.randn(batch_size, config.state_dim, device=device)
    batch[ACTION] = torch.rand(batch_size, config.chunk_size, config.action_dim, device=device) * 2 - 1
    batch[ACTION_IS_PAD] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool, device=device)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps (after 2 untimed)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--vlm-dir", default=None, help="local Qwen3-VL folder (default: tiny random)")
    parser.add_argument("--vjepa2-dir", default=None, help="local V-JEPA 2 folder (default: tiny random)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA GPU on this machine; nothing was run")

    from vlajepa.policies import make_policy
    from vlajepa.presets import preset_path
    from vlajepa.train.config import TrainConfig
    from vlajepa.train.optim import build_optimizer

    device = torch.device("cuda")
    torch.manual_seed(0)
    config = paper_config(args.vlm_dir, args.vjepa2_dir)
    policy = make_policy(config).to(device).train()
    optimizer = build_optimizer(policy, TrainConfig.from_yaml(preset_path("paper")))
    batch = random_batch(config, args.batch_size, device)
    times = []
    for step in range(args.steps + 2):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, logs = policy(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - started)
    print(json.dumps({
        "device": torch.cuda.get_device_name(0),
        "sizes": "full" if args.vlm_dir else "tiny",
        "batch_size": args.batch_size,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "step_s_median": round(sorted(times)[len(times) // 2], 4),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "last_loss": logs,
    }))


if __name__ == "__main__":
    main()
