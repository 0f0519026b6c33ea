"""Training metrics: one JSON object per line in ``<out>/metrics.jsonl`` and TensorBoard scalars when available.

On resume the log is cut back to the resumed step (atomically), so it reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlajepa.io_utils import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    """Append-only jsonl log (+ TensorBoard) of the main process."""

    def __init__(self, out: str | Path, *, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = Path(out) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_step)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(Path(out) / TENSORBOARD_DIR), purge_step=resume_step + 1)

    def _truncate(self, step: int) -> None:
        """Keep only lines of steps ``<= step`` (all of them are dropped for a fresh run)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(record, dict) and record.get("step", math.inf) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"step": step, **metrics}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._handle.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """Every record of ``<out>/metrics.jsonl``."""
    path = Path(out) / METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
