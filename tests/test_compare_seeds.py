"""benchmarks/compare_seeds.py: pooling repeated run_mt10 results and pairing differences by run."""

from __future__ import annotations

import json

import pytest

from benchmarks import compare_seeds


def _part(successes: int, episodes: int) -> dict:
    return {"successes": successes, "episodes": episodes, "success_rate": successes / episodes}


def _result(path, entries) -> str:
    summary = [
        {"method": m, "target": t, "id": _part(*i), "perturbed": {**_part(*p), "per_setting": {"camera": p[0] / p[1]}}}
        for m, t, i, p in entries
    ]
    path.write_text(json.dumps({"summary": summary}))
    return str(path)


def test_runs_are_pooled_and_differences_paired_by_run(tmp_path) -> None:
    first = _result(tmp_path / "s0.json", [("bc", "none", (80, 200), (210, 700)),
                                           ("vla-jepa-cotrain", "frozen", (60, 200), (245, 700))])
    second = _result(tmp_path / "s1.json", [("bc", "none", (70, 200), (140, 700))])
    report = compare_seeds.main([first, second, "--out", str(tmp_path / "cmp")])
    bc, cotrain = report["methods"]
    assert bc["runs"] == 2 and bc["id"]["per_run"] == [0.4, 0.35]
    assert bc["id"]["pooled"]["successes"] == 150 and bc["id"]["pooled"]["episodes"] == 400
    assert bc["perturbed"]["mean_over_runs"] == pytest.approx(0.25)
    low, high = bc["perturbed"]["pooled"]["ci_low"], bc["perturbed"]["pooled"]["ci_high"]
    assert low < 350 / 1400 < high
    delta = cotrain["perturbed_minus_reference_points"]
    assert delta["per_run"][0] == pytest.approx(5.0) and delta["per_run"][1] is None  # only paired runs count
    assert delta["mean"] == pytest.approx(5.0) and "perturbed_minus_reference_points" not in bc
    assert bc["perturbed"]["per_setting_mean_over_runs"]["camera"] == pytest.approx(0.25)
    text = (tmp_path / "cmp.md").read_text()
    assert "150/400" in text and "+5.0" in text and json.loads((tmp_path / "cmp.json").read_text())["runs"]


def test_a_file_without_a_summary_is_named(tmp_path) -> None:
    bad = tmp_path / "eval.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="eval.json: no 'summary'"):
        compare_seeds.main([str(bad), "--out", str(tmp_path / "cmp")])
