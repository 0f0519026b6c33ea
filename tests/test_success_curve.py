"""benchmarks/success_curve.py: eval results of one run's checkpoints become a success-against-epochs curve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import success_curve
from vlajepa.eval.report import make_row


def write_eval(path: Path, successes: list[int], episodes: int = 10) -> Path:
    rows = [make_row("bc", f"task{i}-v3", "id", s, episodes) for i, s in enumerate(successes)]
    path.write_text(json.dumps({"rows": rows}))
    return path


def fake_run(tmp_path: Path, frames: int = 320, batch_size: int = 32) -> Path:
    robot = tmp_path / "robot"
    (robot / "meta").mkdir(parents=True)
    (robot / "meta" / "info.json").write_text(json.dumps({"total_frames": frames}))
    last = tmp_path / "run" / "checkpoints" / "last"
    last.mkdir(parents=True)
    (last / "train_config.json").write_text(json.dumps({"robot": str(robot), "batch_size": batch_size}))
    return tmp_path / "run"


def test_the_curve_pools_tasks_per_checkpoint_and_counts_epochs(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    early, late = write_eval(tmp_path / "a.json", [1, 2]), write_eval(tmp_path / "b.json", [5, 7])
    out = tmp_path / "curve"
    argv = ["success_curve.py", "--run", str(run), "--eval", f"20={late}", "--eval", f"10={early}", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    success_curve.main()
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["step"], r["epoch"], r["successes"], r["episodes"]) for r in report["rows"]] == [
        (10, 1.0, 3, 20),
        (20, 2.0, 12, 20),
    ]
    assert out.with_suffix(".png").stat().st_size > 0 and "| bc | id | 20 | 2.0 |" in out.with_suffix(".md").read_text()


def test_a_malformed_eval_item_is_refused(tmp_path, monkeypatch):
    run = fake_run(tmp_path)
    monkeypatch.setattr(sys, "argv", ["success_curve.py", "--run", str(run), "--eval", "x.json", "--out", "o"])
    with pytest.raises(SystemExit, match="expected STEP=PATH"):
        success_curve.main()
