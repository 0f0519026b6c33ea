"""benchmarks/compare_planning.py: base and planner results of the same checkpoints, pooled over seeds and paired."""

from __future__ import annotations

import json

import pytest

from benchmarks import compare_planning


def _eval_result(path, rows) -> str:
    data = [
        {"method": "x", "task": task, "setting": setting, "successes": s, "episodes": n, "success_rate": s / n}
        for task, setting, s, n in rows
    ]
    path.write_text(json.dumps({"rows": data}))
    return str(path)


def test_planner_rows_are_renamed_pooled_and_paired_by_seed(tmp_path) -> None:
    base0 = _eval_result(tmp_path / "b0.json", [("reach", "id", 10, 20), ("reach", "camera", 1, 5)])
    plan0 = _eval_result(tmp_path / "p0.json", [("reach", "id", 14, 20), ("reach", "camera", 2, 5)])
    base1 = _eval_result(tmp_path / "b1.json", [("reach", "id", 8, 20), ("reach", "language", 3, 10)])
    plan1 = _eval_result(tmp_path / "p1.json", [("reach", "id", 8, 20)])
    report = compare_planning.main(
        ["--seed", "0", f"base={base0}", f"plan={plan0}", "--seed", "1", f"base[id]={base1}", f"plan={plan1}",
         "--out", str(tmp_path / "cmp")]
    )  # fmt: skip
    base, plan = report["methods"]
    assert (base["method"], plan["method"]) == ("bc", "bc+plan")
    assert plan["id"]["pooled"]["successes"] == 22 and plan["id"]["pooled"]["episodes"] == 40
    assert plan["id"]["minus_base_points"] == {0: pytest.approx(20.0), 1: pytest.approx(0.0)}
    assert plan["perturbed"]["minus_base_points"] == {0: pytest.approx(20.0)}  # seed 1 has no perturbed rows
    assert {row["seed"] for row in report["rows"]} == {0, 1} and "minus_base_points" not in base["id"]
    assert "bc+plan" in (tmp_path / "cmp.md").read_text()


def test_a_bad_item_names_itself(tmp_path) -> None:
    with pytest.raises(SystemExit, match="expected ROLE=PATH"):
        compare_planning.main(["--seed", "0", "planner.json", "--out", str(tmp_path / "x")])
