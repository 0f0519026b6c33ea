"""The results record: every result set sits in a study folder with a README, every result JSON names the code and
data it came from, and every relative link in the record resolves (nothing a doc cites may disappear)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORD_DOCS = [ROOT / "docs" / "results.md", RESULTS / "README.md", *sorted(RESULTS.glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_results_are_grouped_in_study_folders_with_a_readme() -> None:
    loose = [p.name for p in RESULTS.iterdir() if p.is_file() and p.name != "README.md"]
    assert not loose, f"result files outside a study folder in {RESULTS}: {loose}"
    studies = [p for p in RESULTS.iterdir() if p.is_dir()]
    assert studies, f"no study folders in {RESULTS}"
    for study in studies:
        assert (study / "README.md").is_file(), f"study folder {study} has no README.md"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_result_json_names_its_commit_and_data_revision(path: Path) -> None:
    report = json.loads(path.read_text())
    commit = report.get("git_commit")
    assert isinstance(commit, str) and (commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}", commit)), (
        f"{path}: git_commit must be a full commit hash or 'unknown', got {commit!r}")
    revision = report.get("data_revision")
    assert isinstance(revision, str) and revision, f"{path}: data_revision must be a non-empty string"


@pytest.mark.parametrize("doc", RECORD_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_record_links_resolve(doc: Path) -> None:
    missing = [target for target in LINK.findall(doc.read_text())
               if "://" not in target and not (doc.parent / target).exists()]
    assert not missing, f"{doc}: links to missing files {missing}"
