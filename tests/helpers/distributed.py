"""Two-process CPU (gloo) training tests through ``accelerate launch``: the launch, and what each process records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(script: str | Path, *args: str | Path, timeout: int = 300) -> None:
    """Run ``script args...`` in two processes on this machine's CPU; a failure shows both processes' output."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(script), *(str(a) for a in args),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def train_and_record(trainer: Any, out: Path) -> None:
    """In each launched process: train, and write the initial weights (main process), this process's final weights
    ``rank<r>.safetensors`` and its report ``report<r>.json`` (a file each: stdout lines may interleave)."""
    from safetensors.torch import save_file

    if trainer.is_main:
        initial = {k: v.clone().contiguous() for k, v in trainer.policy.state_dict().items()}
        save_file(initial, out / "initial.safetensors")
    result = trainer.train()
    weights = {k: v.contiguous() for k, v in trainer.policy.state_dict().items()}
    save_file(weights, out / f"rank{trainer.rank}.safetensors")
    report = {"rank": trainer.rank, "world_size": trainer.world_size, "losses": result.losses}
    (out / f"report{trainer.rank}.json").write_text(json.dumps(report))


def read_reports(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"report{rank}.json").read_text()) for rank in (0, 1)]
