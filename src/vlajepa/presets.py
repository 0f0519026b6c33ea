"""Named YAML presets shipped inside the package: ``vlajepa/configs/<name>.yaml`` (``default``, ``tiny``, ``paper``).

A preset holds a ``model:`` section (:class:`~vlajepa.config.VLAJEPAConfig`) and an optional ``train:`` section
(:class:`~vlajepa.train.config.TrainConfig`). They are package data, found through :mod:`importlib.resources`, so
an installed wheel has them as well as a source checkout; wherever a preset is asked for, a path to a YAML file of
the same shape works too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vlajepa.config import ConfigError

_PRESET_DIR = "configs"  # inside the vlajepa package


def preset_names() -> tuple[str, ...]:
    """The names of the packaged presets, sorted (``("default", "paper", "tiny")``)."""
    folder = resources.files("vlajepa") / _PRESET_DIR
    return tuple(sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")))


def preset_path(name: str | Path) -> Path:
    """The YAML file ``name`` stands for: ``name`` itself if it is an existing file, else the packaged preset of
    that name (``"tiny"``).

    Raises :class:`~vlajepa.config.ConfigError` naming the available presets when it is neither.
    """
    path = Path(name)
    if path.is_file():
        return path
    if str(name) in preset_names():
        resource = resources.files("vlajepa") / _PRESET_DIR / f"{name}.yaml"
        if not isinstance(resource, Path):  # e.g. imported from a zip archive: no file to hand out
            raise ConfigError(f"preset {name!r}: the vlajepa package is not installed as files ({resource})")
        return resource
    raise ConfigError(f"config {str(name)!r} not found: neither a YAML file nor a preset ({', '.join(preset_names())})")
