"""With and without planning, over training seeds: pool ``vlajepa eval`` result JSONs of the same checkpoints.

Each ``--seed`` names the evaluation results of one training seed: the base policy's and the planner's (and, when
run, the oracle's), all on the same evaluation seeds. Rows are renamed ``<base>``, ``<base>+plan`` and
``<base>+oracle``; the report holds every row (the shared schema: ``method, task, setting, episodes, successes``
plus the seed), each method's in-distribution and perturbed success pooled over seeds with 95 % Wilson intervals,
and the planner-minus-base difference per seed (paired: the same checkpoint, the same episodes).

    python benchmarks/compare_planning.py --base bc \\
        --seed 0 "base[id]=benchmarks/results/perception/mt10_bc_s0.json" plan=outputs/plan_s0.json \\
        --seed 1 base=... plan=... --out benchmarks/results/planning/mt10_bc_plan
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vlajepa.eval.report import current_command, make_row, success_cell
from vlajepa.io_utils import read_json, write_report_files

ROLES = ("base", "plan", "oracle")


def method_name(base: str, role: str) -> str:
    return base if role == "base" else f"{base}+{role}"


def load_seed(items: list[str], base: str, seed: int) -> list[dict[str, Any]]:
    """Rows of one seed's result files (``ROLE=PATH``, or ``ROLE[SETTING,...]=PATH`` to keep only those settings of
    the file; a role may repeat, e.g. ID and perturbed in two files)."""
    rows = []
    for item in items:
        role, sep, path = item.partition("=")
        role, _, wanted = role.partition("[")
        settings = set(wanted.rstrip("]").split(",")) if wanted else None
        if not sep or role not in ROLES or (wanted and not wanted.endswith("]")):
            raise SystemExit(
                f"--seed item {item!r}: expected ROLE=PATH or ROLE[SETTING,...]=PATH, ROLE one of {', '.join(ROLES)}"
            )
        report = read_json(Path(path), SystemExit, "evaluation result")
        if not isinstance(report, dict) or not isinstance(report.get("rows"), list):
            raise SystemExit(f"{path}: no 'rows' list (is it a `vlajepa eval` result?)")
        for row in report["rows"]:
            if settings is not None and row["setting"] not in settings:
                continue
            extra = {k: v for k, v in row.items() if k not in ("method", "task", "setting", "successes", "episodes")}
            extra = {k: v for k, v in extra.items() if k not in ("success_rate", "ci_low", "ci_high")}
            rows.append(
                make_row(method_name(base, role), row["task"], row["setting"], row["successes"], row["episodes"],
                         seed=seed, source=path, **extra)
            )  # fmt: skip
    return rows


def pooled(rows: list[dict[str, Any]], method: str, part: str, seed: int | None = None) -> dict[str, Any] | None:
    chosen = [
        r for r in rows
        if r["method"] == method and (r["setting"] == "id") == (part == "id") and (seed is None or r["seed"] == seed)
    ]  # fmt: skip
    if not chosen:
        return None
    return make_row(method, "all", part, sum(r["successes"] for r in chosen), sum(r["episodes"] for r in chosen))


def compare(rows: list[dict[str, Any]], base: str, seeds: list[int]) -> list[dict[str, Any]]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for method in methods:
        entry: dict[str, Any] = {"method": method}
        for part in ("id", "perturbed"):
            per_seed = {seed: pooled(rows, method, part, seed) for seed in seeds}
            entry[part] = {
                "pooled": pooled(rows, method, part),
                "per_seed": {seed: None if p is None else p["success_rate"] for seed, p in per_seed.items()},
            }
            if method != base:
                deltas = {}
                for seed in seeds:
                    ours, theirs = per_seed[seed], pooled(rows, base, part, seed)
                    if ours is not None and theirs is not None and ours["episodes"] == theirs["episodes"]:
                        deltas[seed] = 100 * (ours["success_rate"] - theirs["success_rate"])
                entry[part]["minus_base_points"] = deltas
        out.append(entry)
    return out


def markdown(entries: list[dict[str, Any]], seeds: list[int], command: str) -> str:
    lines = [
        "# With and without planning, pooled over training seeds",
        "",
        f"Command: `{command}`",
        "",
        f"Seeds: {', '.join(map(str, seeds))}. Pooled: episodes summed over seeds, 95 % Wilson interval. Δ: minus the "
        "base policy on the same checkpoint and episodes, per seed (points).",
        "",
        "| method | in distribution | ID per seed | Δ ID per seed | perturbed (7 pooled) | perturbed per seed "
        "| Δ perturbed per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        cells = []
        for part in ("id", "perturbed"):
            p = e[part]
            cells.append(success_cell(p["pooled"]) if p["pooled"] else "not run")
            cells.append(", ".join("–" if v is None else f"{100 * v:.1f}" for v in p["per_seed"].values()))
            deltas = p.get("minus_base_points")
            cells.append("" if deltas is None else ", ".join(f"{d:+.1f}" for d in deltas.values()))
        lines.append(f"| {e['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="bc", help="the base policy's method name (default bc)")
    parser.add_argument(
        "--seed", nargs="+", action="append", required=True, metavar="ITEM",
        help="SEED ROLE=PATH [ROLE=PATH ...] (ROLE: base, plan, oracle); repeat per training seed",
    )  # fmt: skip
    parser.add_argument("--data-revision", default="unknown", help="data revision recorded in the JSON")
    parser.add_argument("--out", required=True, help="output prefix: <out>.json and <out>.md")
    args = parser.parse_args(argv)
    rows, seeds = [], []
    for group in args.seed:
        try:
            seed = int(group[0])
        except ValueError as err:
            raise SystemExit(f"--seed {' '.join(group)}: the first item must be the training seed") from err
        seeds.append(seed)
        rows += load_seed(group[1:], args.base, seed)
    entries = compare(rows, args.base, seeds)
    command = current_command()
    report = {"command": command, "data_revision": args.data_revision, "seeds": seeds, "methods": entries, "rows": rows}
    text = markdown(entries, seeds, command)
    write_report_files(args.out, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
