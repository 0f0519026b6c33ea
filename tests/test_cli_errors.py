"""The newcomer's path through the CLI: errors are one line naming the culprit, help text renders as written."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from vlajepa.checkpoint import CheckpointError
from vlajepa.cli import build_parser, error_message, main
from vlajepa.commands.evaluate import default_video_dir
from vlajepa.envs import PERTURBATIONS


def one_error_line(capsys, command: str) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"vlajepa {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["eval", "--policy", f"checkpoint:{tmp_path / 'missing'}"]) == 2
    assert "missing: no such checkpoint folder" in one_error_line(capsys, "eval")
    # a folder that is not a checkpoint fails when the command runs (CheckpointError), reported the same way
    assert main(["eval", "--policy", f"checkpoint:{tmp_path}", "--out", str(tmp_path / "r")]) == 2
    assert str(tmp_path) in one_error_line(capsys, "eval")


def test_train_reports_the_missing_dataset_before_building_anything(tmp_path, capsys):
    # the default preset's frozen target has no weights: that must not be the first complaint
    assert main(["train", "--robot", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys, "train")
    assert "argument --robot" in line and "nonexistent: no such dataset folder" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("order", "first"),
    [(("--video", "--robot", "--target-checkpoint"), "--video"), (("--target-checkpoint", "--robot"), "--target")],
)
def test_train_checks_paths_in_the_order_typed(tmp_path, capsys, order, first):
    argv = ["train", "--out", str(tmp_path / "run")]
    for option in order:
        argv += [option, str(tmp_path / f"missing{option}")]
    assert main(argv) == 2
    assert f"argument {first}" in one_error_line(capsys, "train")


def test_combination_refusals_and_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["collect", "video", "--action-noise", "0.2", "--out", str(tmp_path / "v")]) == 2
    assert "robot demonstrations only" in one_error_line(capsys, "collect")
    assert main(["eval"]) == 2  # a required option is missing
    assert "--policy" in one_error_line(capsys, "eval")
    assert main(["eval", "--policy", "expert", "--settings", "id,fog"]) == 2
    assert "'fog'" in one_error_line(capsys, "eval")


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    argv = ["eval", "--policy", f"checkpoint:{tmp_path}", "--out", str(tmp_path / "r")]
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err
    assert err.strip().splitlines()[-1].startswith("vlajepa eval: error: ")  # the one line still closes it
    monkeypatch.setenv("VLAJEPA_DEBUG", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_the_installed_command_exits_non_zero_with_one_line(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "vlajepa.cli", "eval", "--policy", f"checkpoint:{tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and process.stderr.startswith("vlajepa eval: error: ")
    assert "Traceback" not in process.stderr


def test_only_reported_errors_become_one_line():
    assert error_message(KeyError("observation.state")) == "missing key 'observation.state'"
    assert error_message(ValueError("first line\n  second line")) == "first line second line"
    assert error_message(SystemExit("refused")) == "refused"
    assert error_message(CheckpointError("x: missing")) == "x: missing"


def test_eval_help_renders_percent_and_lists_the_perturbations(capsys):
    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words
    assert "95% Wilson intervals" in text and "%%" not in text
    for name in PERTURBATIONS:
        assert name in text


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        text = command.format_help()
        assert "%%" not in text and "%(" not in text, name
        for action in command._actions:
            assert action.help, f"vlajepa {name} {'/'.join(action.option_strings) or action.dest}: no help"


def test_videos_land_beside_the_results():
    assert default_video_dir("runs/demo/eval_mt10") == Path("runs/demo/videos/eval_mt10")
    assert default_video_dir("results") == Path("videos/results")
