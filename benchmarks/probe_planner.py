"""Diagnostics of a trained planner on the episodes its training held out (issue: world-model action selection).

- World model: mean latent error of the rollout at each horizon, against copying the current frame and against the
  same rollout with the actions shuffled across windows (a world model whose error does not rise with shuffled
  actions cannot tell candidate chunks apart).
- Score: ranking accuracy (later over earlier frames of successful episodes, successful over failed episodes, the
  right instruction over another task's) on real and on imagined latents, with canonical and held-out phrasings.

Writes ``<out>.json`` and ``<out>.md``:

    python benchmarks/probe_planner.py --planner outputs/planning/bc_planner \\
        --out benchmarks/results/planning/diagnostics_seed0
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from vlajepa.io_utils import write_report_files


def markdown(report: dict) -> str:
    lines = ["# Planner diagnostics (held-out episodes)", "", f"Command: `{report['command']}`", ""]
    lines += ["## World model: mean L1 latent error (standardized latents)", ""]
    lines += [
        "| horizon (steps) | windows | world model | copy current frame | shuffled actions |",
        "|---|---|---|---|---|",
    ]
    for row in report["world_model"]["horizons"]:
        lines.append(
            f"| {row['horizon_steps']} | {row['windows']} | {row['world_model']:.4f} | {row['copy_current']:.4f} "
            f"| {row['shuffled_actions']:.4f} |"
        )
    header = "| latents / phrasing | later > earlier | success > failure | right > wrong instruction |"
    lines += ["", "## Score: ranking accuracy (pairs)", "", header, "|---|---|---|---|"]
    for key, metrics in report["score"].items():
        cells = []
        for name in ("later_over_earlier", "success_over_failure", "right_over_wrong_instruction"):
            entry = metrics.get(name)
            cells.append(
                "n/a" if not entry or entry["accuracy"] is None else f"{entry['accuracy']:.3f} ({entry['pairs']})"
            )
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--planner", required=True, help="trained planner checkpoint folder (vlajepa train-planner)")
    parser.add_argument("--windows", type=int, default=1024, help="held-out windows for the world model (default 1024)")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per score ranking (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-revision", default="unknown", help="data revision recorded in the JSON")
    parser.add_argument("--out", type=Path, required=True, help="output prefix (.json and .md)")
    args = parser.parse_args()

    import torch

    from vlajepa.train.planner import diagnose_planner

    torch.set_num_threads(args.threads)
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "data_revision": args.data_revision,
        "planner": args.planner,
        **diagnose_planner(args.planner, windows=args.windows, pairs=args.pairs, seed=args.seed),
    }
    text = markdown(report)
    write_report_files(args.out, report, text)
    print(text)


if __name__ == "__main__":
    main()
