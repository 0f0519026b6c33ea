"""The package as a user gets it: a non-editable install into a fresh virtual environment works from any folder.

Everything the library reads at run time (the presets, the instruction table) must be package data; a path into
the source checkout would work in the repository and fail in an installed wheel. The install is offline (no
index, no dependencies: the environment sees this interpreter's packages) and builds from a copy of the sources,
so the checkout gets no ``build/`` or ``*.egg-info`` folders.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run by the installed interpreter from a folder outside the checkout.
CHECK_INSTALLED = """
import importlib.util
import sys
from pathlib import Path

import vlajepa
from vlajepa import VLAJEPAConfig, VLAJEPAPolicy, load_policy
from vlajepa.envs.language import LANGUAGE, instruction
from vlajepa.presets import preset_names, preset_path
from vlajepa.train.config import TrainConfig

venv = Path(sys.prefix).resolve()
assert Path(vlajepa.__file__).resolve().is_relative_to(venv), f"vlajepa imported from {vlajepa.__file__}"
assert preset_names() == ("default", "paper", "tiny", "vit"), preset_names()
tiny = preset_path("tiny")
assert tiny.resolve().is_relative_to(venv), tiny
assert VLAJEPAConfig.from_yaml(tiny).image_size == 32 and TrainConfig.from_yaml(tiny).steps == 20
assert VLAJEPAConfig.from_yaml(preset_path("default")).image_size == 96
assert len(LANGUAGE) == 50 and instruction("reach") == LANGUAGE["reach-v3"].canonical
assert callable(load_policy) and VLAJEPAPolicy.config_class is VLAJEPAConfig
for helpers in ("vlajepa.models", "vlajepa.train.testing", "vlajepa.serve.testing"):
    assert importlib.util.find_spec(helpers) is None, f"{helpers} is installed"
print("installed copy ok")
"""


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_non_editable_install_runs_from_another_folder(tmp_path):
    for module in ("venv", "pip", "setuptools"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the Python module {module!r} is not available to build and install the package")
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    venv = tmp_path / "venv"
    # No pip of its own (ensurepip is slow and not always present): this interpreter's pip, visible through the
    # system site packages, installs into the environment it runs in.
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp_path, env)
    python, vlajepa = venv / "bin" / "python", venv / "bin" / "vlajepa"
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", source], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = _run([vlajepa, "info"], elsewhere, env)
    assert '"vlajepa"' in info.stdout
    train_help = _run([vlajepa, "train", "--help"], elsewhere, env)
    assert "--config" in train_help.stdout
    assert "installed copy ok" in _run([python, "-c", CHECK_INSTALLED], elsewhere, env).stdout
