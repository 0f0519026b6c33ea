"""Compare methods across repeated MT10 runs (one ``run_mt10.py`` result JSON per training seed).

One training run per method cannot separate method differences of a few points from run-to-run variation: BC
retrained with another seed on the same data moved by 5.7 points under perturbation. This script pools several
runs of the same methods (each JSON is one seed of every method in it) and reports, per method and target encoder:

* each run's in-distribution and pooled-perturbation success, and their mean over runs;
* the episodes pooled over runs, with a 95 % Wilson interval (this interval covers episode sampling only, not the
  spread between training runs, which the per-run columns show);
* each perturbation's success averaged over runs;
* the difference to ``--reference`` under perturbation, paired by run (the same JSON, so the same data and seed),
  with its mean, minimum and maximum over runs.

    python benchmarks/compare_seeds.py benchmarks/results/cotrain/mt10_steps1200_rev2.json \\
        benchmarks/results/cotrain/mt10_steps1200_rev2_seed1.json --out benchmarks/results/cotrain/mt10_rev2_seeds
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vlajepa.eval.report import current_command, make_row, success_cell
from vlajepa.io_utils import read_json, write_report_files

PARTS = ("id", "perturbed")


def load_runs(paths: list[Path]) -> list[dict[tuple[str, str], dict[str, Any]]]:
    """Per file, ``(method, target) -> summary entry``; SystemExit naming the file when it has no run_mt10 summary."""
    runs = []
    for path in paths:
        report = read_json(path, SystemExit, "run_mt10 result")
        summary = report.get("summary") if isinstance(report, dict) else None
        if not summary:
            raise SystemExit(f"{path}: no 'summary' list (is it a run_mt10.py result?)")
        runs.append({(entry["method"], entry.get("target", "none")): entry for entry in summary})
    return runs


def pooled(method: str, part: str, parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Successes and episodes summed over runs, as a row of the shared schema (Wilson interval of the pooled rate)."""
    present = [entry for entry in parts if entry is not None]
    if not present:
        return None
    successes = sum(entry["successes"] for entry in present)
    episodes = sum(entry["episodes"] for entry in present)
    return make_row(method, "all", part, successes, episodes)


def compare(runs: list[dict[tuple[str, str], dict[str, Any]]], reference: str) -> list[dict[str, Any]]:
    """One entry per (method, target) seen in any run; see the module docstring."""
    keys = list(dict.fromkeys(key for run in runs for key in run))
    reference_keys = [key for key in keys if key[0] == reference]
    out = []
    for method, target in keys:
        entry: dict[str, Any] = {"method": method, "target": target, "runs": sum((method, target) in r for r in runs)}
        for part in PARTS:
            per_run = [run.get((method, target), {}).get(part) for run in runs]
            entry[part] = {
                "per_run": [None if p is None else p["success_rate"] for p in per_run],
                "mean_over_runs": _mean([p["success_rate"] for p in per_run if p is not None]),
                "pooled": pooled(method, part, per_run),
            }
        settings = [run.get((method, target), {}).get("perturbed", {}).get("per_setting") for run in runs]
        entry["perturbed"]["per_setting_mean_over_runs"] = {
            name: _mean([rates[name] for rates in settings if rates and name in rates])
            for name in dict.fromkeys(name for rates in settings if rates for name in rates)
        }
        if reference_keys and (method, target) not in reference_keys:
            deltas = []
            for run in runs:
                ours = run.get((method, target), {}).get("perturbed")
                theirs = run.get(reference_keys[0], {}).get("perturbed")
                deltas.append(None if ours is None or theirs is None else
                              100 * (ours["success_rate"] - theirs["success_rate"]))
            paired = [d for d in deltas if d is not None]
            entry["perturbed_minus_reference_points"] = {
                "reference": f"{reference_keys[0][0]} [{reference_keys[0][1]}]",
                "per_run": deltas,
                "mean": _mean(paired),
                "min": min(paired) if paired else None,
                "max": max(paired) if paired else None,
            }
        out.append(entry)
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown(entries: list[dict[str, Any]], files: list[str], command: str) -> str:
    lines = [
        "# MT10: methods over repeated training runs",
        "",
        f"Command: `{command}`",
        "",
        "Runs (one training seed of every method each): " + ", ".join(f"`{f}`" for f in files) + ".",
        "Per-run columns list the runs in that order. Pooled: episodes summed over runs, 95 % Wilson interval "
        "(episode sampling only; the spread between runs is in the per-run columns).",
        "",
        "| method | target | runs | ID per run | ID mean | ID pooled | perturbed per run | perturbed mean | "
        "perturbed pooled | Δ perturbed vs reference per run (points) | Δ mean [min, max] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        delta = e.get("perturbed_minus_reference_points")
        per_run_delta = mean_delta = ""
        if delta is not None:
            per_run_delta = ", ".join("–" if d is None else f"{d:+.1f}" for d in delta["per_run"])
            if delta["mean"] is not None:
                mean_delta = f"{delta['mean']:+.1f} [{delta['min']:+.1f}, {delta['max']:+.1f}]"
        lines.append(
            f"| {e['method']} | {e['target']} | {e['runs']} | "
            + " | ".join(
                f"{', '.join(_pct(v) for v in e[part]['per_run'])} | {_pct(e[part]['mean_over_runs'])} | "
                f"{success_cell(e[part]['pooled']) if e[part]['pooled'] else 'not run'}"
                for part in PARTS
            )
            + f" | {per_run_delta} | {mean_delta} |"
        )
    names = list(dict.fromkeys(n for e in entries for n in e["perturbed"]["per_setting_mean_over_runs"]))
    if names:
        lines += ["", "Per perturbation, success % averaged over runs:", "",
                  "| method | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for e in entries:
            rates = e["perturbed"]["per_setting_mean_over_runs"]
            lines.append(f"| {e['method']} | {e['target']} | " + " | ".join(_pct(rates.get(n)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="run_mt10.py result JSONs, one per training seed")
    parser.add_argument("--reference", default="bc", help="method the perturbation differences are taken against")
    parser.add_argument("--out", required=True, help="output prefix: <out>.json and <out>.md")
    args = parser.parse_args(argv)
    entries = compare(load_runs(args.results), args.reference)
    files = [str(path) for path in args.results]
    command = current_command()
    report = {"command": command, "runs": files, "reference": args.reference, "methods": entries}
    text = markdown(entries, files, command)
    write_report_files(args.out, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
