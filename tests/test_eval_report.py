"""The evaluation report: Wilson intervals, the shared row schema, markdown and plot output."""

import json

import pytest

from vlajepa.eval.report import ROW_FIELDS, build_report, markdown_table, rows_from_episodes, write_report
from vlajepa.eval.runner import EpisodeResult
from vlajepa.eval.stats import wilson_interval


def test_wilson_known_values():
    # Reference values from the closed-form Wilson score interval (z = 1.96).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-3)
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-3)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def _episodes():
    out = []
    for task, wins in (("reach-v3", [1, 1, 0, 1]), ("push-v3", [0, 0, 0, 1])):
        for i, win in enumerate(wins):
            out.append(EpisodeResult(task, "id", i, bool(win), 10 + i, "do it"))
            out.append(EpisodeResult(task, "camera", i, False, 50, "do it"))
    return out


def test_rows_follow_the_shared_schema(tmp_path):
    rows = rows_from_episodes("expert", _episodes(), severity=2)
    assert len(rows) == 4
    for row in rows:
        assert set(ROW_FIELDS) <= set(row)
    reach = next(r for r in rows if r["task"] == "reach-v3" and r["setting"] == "id")
    assert (reach["episodes"], reach["successes"], reach["success_rate"]) == (4, 3, 0.75)
    assert reach["ci_low"] < 0.75 < reach["ci_high"]
    camera = next(r for r in rows if r["setting"] == "camera")
    assert camera["severity"] == 2 and camera["successes"] == 0

    report = build_report(rows, 12.3, command="vlajepa eval --policy expert")
    paths = write_report(report, tmp_path / "noise0.3", title="t")  # a dot in the prefix is kept
    assert sorted(p.name for p in paths.values()) == ["noise0.3.json", "noise0.3.md", "noise0.3.png"]
    loaded = json.loads(paths["json"].read_text())
    assert loaded["command"] == "vlajepa eval --policy expert" and loaded["wall_time_s"] == 12.3
    assert loaded["rows"] == rows
    pooled = {(s["method"], s["setting"]): s for s in loaded["summary"]}
    assert pooled[("expert", "id")]["successes"] == 4 and pooled[("expert", "id")]["episodes"] == 8
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    md = markdown_table(report)
    assert "| expert | reach-v3 | 75.0 [" in md and "(4)" in md
