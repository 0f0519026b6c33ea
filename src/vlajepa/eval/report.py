"""Evaluation reports: the shared results schema (JSON), a markdown table and a bar plot.

Every evaluation JSON the project writes has a top-level ``command``, ``wall_time_s`` and a list ``rows``, one per
(method, task, setting), each with ``method``, ``task``, ``setting``, ``episodes``, ``successes``, ``success_rate``,
``ci_low``, ``ci_high`` (95 % Wilson interval). Later benchmarks reuse this schema and may add fields.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vlajepa.eval.runner import EpisodeResult, EvalConfig
from vlajepa.eval.stats import wilson_interval
from vlajepa.io_utils import atomic_write, atomic_write_json, atomic_write_text, git_commit, with_extension

ROW_FIELDS = ("method", "task", "setting", "episodes", "successes", "success_rate", "ci_low", "ci_high")


def make_row(
    method: str, task: str, setting: str, successes: int, episodes: int, **extra: Any
) -> dict[str, Any]:
    """One result row of the shared schema."""
    low, high = wilson_interval(successes, episodes)
    row = {
        "method": method,
        "task": task,
        "setting": setting,
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes if episodes else 0.0,
        "ci_low": low,
        "ci_high": high,
    }
    row.update(extra)
    return row


def rows_from_episodes(
    method: str, episodes: Iterable[EpisodeResult], severity: int | None = None, **extra: Any
) -> list[dict[str, Any]]:
    """Aggregate episodes into one row per (task, setting), keeping first-seen order."""
    groups: dict[tuple[str, str], list[EpisodeResult]] = defaultdict(list)
    for episode in episodes:
        groups[(episode.task, episode.setting)].append(episode)
    rows = []
    for (task, setting), group in groups.items():
        successes = sum(e.success for e in group)
        row_extra = dict(extra)
        row_extra["mean_length"] = sum(e.length for e in group) / len(group)
        if setting != "id" and severity is not None:
            row_extra["severity"] = severity
        rows.append(make_row(method, task, setting, successes, len(group), **row_extra))
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, setting): episodes pooled over tasks, with the mean of per-task success rates."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["setting"])].append(row)
    summary = []
    for (method, setting), group in groups.items():
        successes = sum(r["successes"] for r in group)
        episodes = sum(r["episodes"] for r in group)
        pooled = make_row(method, "all", setting, successes, episodes)
        pooled["tasks"] = len(group)
        pooled["mean_task_success_rate"] = sum(r["success_rate"] for r in group) / len(group)
        summary.append(pooled)
    return summary


def current_command() -> str:
    """The command line that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("vlajepa", "__main__.py", "cli.py")):
        argv[0] = "vlajepa"
    elif argv and argv[0].endswith(".py"):
        argv.insert(0, "python")
    return shlex.join(argv)


def build_report(
    rows: list[dict[str, Any]],
    wall_time_s: float,
    command: str | None = None,
    config: EvalConfig | dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The top-level results document."""
    if isinstance(config, EvalConfig):
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()}
    report = {
        "command": command or current_command(),
        "wall_time_s": round(wall_time_s, 2),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "config": config or {},
        "rows": rows,
        "summary": summarize(rows),
    }
    report.update(extra)
    return report


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}"


def success_cell(part: dict[str, Any]) -> str:
    """``rate [ci_low, ci_high] (successes/episodes)`` in percent, from a row or summary with those keys."""
    return (
        f"{_pct(part['success_rate'])} [{_pct(part['ci_low'])}, {_pct(part['ci_high'])}] "
        f"({part['successes']}/{part['episodes']})"
    )


def markdown_table(report: dict[str, Any], title: str = "Evaluation") -> str:
    """A human-readable table: one line per (method, task), one column per setting."""
    rows = report["rows"]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["method"], r["task"], r["setting"]): r for r in rows}
    keys = list(dict.fromkeys((r["method"], r["task"]) for r in rows))
    lines = [
        f"# {title}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Wall time: {report['wall_time_s']:.0f} s. Cells: success % [95 % Wilson interval] (episodes).",
        "",
        "| method | task | " + " | ".join(settings) + " |",
        "|---|---|" + "---|" * len(settings),
    ]
    for method, task in keys:
        cells = []
        for setting in settings:
            row = by_key.get((method, task, setting))
            cells.append(
                "–"
                if row is None
                else f"{_pct(row['success_rate'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}] ({row['episodes']})"
            )
        lines.append(f"| {method} | {task} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Pooled over tasks:",
        "",
        "| method | setting | success % [95 % CI] | episodes | mean of task rates |",
    ]
    lines.append("|---|---|---|---|---|")
    for s in report["summary"]:
        lines.append(
            f"| {s['method']} | {s['setting']} | {_pct(s['success_rate'])} [{_pct(s['ci_low'])}, "
            f"{_pct(s['ci_high'])}] | {s['episodes']} | {_pct(s['mean_task_success_rate'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any], path: str | Path, title: str = "Success rate") -> Path:
    """Grouped bar chart: tasks on the x axis, one bar per (method, setting), 95 % intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["rows"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    series = list(dict.fromkeys((r["method"], r["setting"]) for r in rows))
    by_key = {(r["method"], r["setting"], r["task"]): r for r in rows}
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(tasks) * max(1, len(series)) ** 0.5 + 2), 4.0))
    x = np.arange(len(tasks))
    for i, (method, setting) in enumerate(series):
        rates, low_err, high_err = [], [], []
        for task in tasks:
            row = by_key.get((method, setting, task))
            rate = row["success_rate"] if row else np.nan
            rates.append(100 * rate)
            low_err.append(max(0.0, 100 * (rate - row["ci_low"])) if row else 0)
            high_err.append(max(0.0, 100 * (row["ci_high"] - rate)) if row else 0)
        label = method if len({s for _, s in series}) == 1 else f"{method} / {setting}"
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            rates,
            width,
            yerr=[low_err, high_err],
            capsize=2,
            label=label,
        )
    ax.set_xticks(x, [t.removesuffix("-v3") for t in tasks], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()

    def save(tmp: Path) -> None:
        fig.savefig(tmp, dpi=120, format="png")

    atomic_write(path, save)
    plt.close(fig)
    return Path(path)


def write_report(
    report: dict[str, Any], out_prefix: str | Path, title: str = "Evaluation"
) -> dict[str, Path]:
    """Write ``<prefix>.json``, ``<prefix>.md`` and ``<prefix>.png``; return their paths."""
    return {
        "json": atomic_write_json(with_extension(out_prefix, ".json"), report),
        "md": atomic_write_text(with_extension(out_prefix, ".md"), markdown_table(report, title)),
        "png": plot_report(report, with_extension(out_prefix, ".png"), title),
    }
