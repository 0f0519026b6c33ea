"""Success against training epochs: pool ``vlajepa eval`` results of one run's checkpoints into a curve.

Each ``--eval STEP=PATH`` names the evaluation of the run's checkpoint after ``STEP`` optimizer steps (all on the
same evaluation seeds). An epoch is one pass over the robot dataset's frames: ``epochs = step * batch_size /
frames``, with the batch size from the run's ``train_config.json`` and the frame count from the dataset's
``meta/info.json``. Writes ``<out>.json`` (rows in the shared schema plus ``step`` and ``epoch``, pooled over
tasks per setting), ``<out>.md`` and ``<out>.png`` (success with 95 % Wilson intervals against epochs).

    python benchmarks/success_curve.py --run outputs/bc_4800 --eval 600=outputs/bc_4800/eval/step600.json \\
        --eval 1200=outputs/bc_4800/eval/step1200.json --out benchmarks/results/perception/mt10_bc_epochs
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vlajepa.eval.report import current_command, success_cell, summarize
from vlajepa.io_utils import atomic_write, read_json, write_report_files


def run_shape(run: Path) -> tuple[int, int, str]:
    """``(batch_size, robot frames, robot dataset)`` of the training run in ``run``."""
    config = read_json(run / "checkpoints" / "last" / "train_config.json", SystemExit, "training config")
    robot = config.get("robot")
    if not robot:
        raise SystemExit(f"{run}: its training config names no robot dataset")
    info = read_json(Path(robot) / "meta" / "info.json", SystemExit, "LeRobot dataset info")
    return int(config["batch_size"]), int(info["total_frames"]), str(robot)


def curve_rows(evals: list[tuple[int, Path]], batch_size: int, frames: int) -> list[dict[str, Any]]:
    """Per (step, method, setting): the episodes of every task pooled, with the step and epoch."""
    rows = []
    for step, path in sorted(evals):
        report = read_json(path, SystemExit, "evaluation result")
        if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
            raise SystemExit(f"{path}: no 'rows' list (is it a `vlajepa eval` result?)")
        epoch = round(step * batch_size / frames, 2)
        rows += [pooled | {"step": step, "epoch": epoch, "source": str(path)} for pooled in summarize(report["rows"])]
    return rows


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for method, setting in dict.fromkeys((r["method"], r["setting"]) for r in rows):
        series = [r for r in rows if (r["method"], r["setting"]) == (method, setting)]
        x = [r["epoch"] for r in series]
        y = [100 * r["success_rate"] for r in series]
        low = [100 * (r["success_rate"] - r["ci_low"]) for r in series]
        high = [100 * (r["ci_high"] - r["success_rate"]) for r in series]
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, label=f"{method} / {setting}")
    ax.set_xlabel("epochs (passes over the robot frames)")
    ax.set_ylabel("success %")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="the training run folder (its checkpoints/last)")
    parser.add_argument("--eval", action="append", required=True, metavar="STEP=PATH",
                        help="a `vlajepa eval` result JSON of the checkpoint after STEP steps (repeat)")  # fmt: skip
    parser.add_argument("--title", default="MT10 success against training epochs")
    parser.add_argument("--data-revision", default="unknown", help="the robot data's revision (results index)")
    parser.add_argument("--out", required=True, help="output prefix (.json, .md, .png)")
    args = parser.parse_args()
    evals = []
    for item in args.eval:
        step, sep, path = item.partition("=")
        if not sep or not step.isdigit():
            raise SystemExit(f"--eval {item!r}: expected STEP=PATH, e.g. 1200=outputs/run/eval/step1200.json")
        evals.append((int(step), Path(path)))
    batch_size, frames, robot = run_shape(args.run)
    rows = curve_rows(evals, batch_size, frames)
    report = {
        "data_revision": args.data_revision,
        "command": current_command(),
        "run": str(args.run),
        "robot": robot,
        "batch_size": batch_size,
        "robot_frames": frames,
        "rows": rows,
    }
    lines = [f"# {args.title}", "", f"Command: `{report['command']}`", "",
             f"Run `{args.run}`: batch {batch_size}, {frames} robot frames "
             f"(one epoch = {frames / batch_size:.0f} steps). Success % [95 % Wilson interval] "
             "(successes/episodes), all tasks pooled.", "",
             "| method | setting | step | epochs | success |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['method']} | {r['setting']} | {r['step']} | {r['epoch']:.1f} | {success_cell(r)} |" for r in rows]
    write_report_files(args.out, report, "\n".join(lines) + "\n")
    plot(rows, Path(args.out).with_suffix(".png"), args.title)


if __name__ == "__main__":
    main()
