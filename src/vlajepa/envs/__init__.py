"""MetaWorld environments with pixels and language, the robustness suite and the "human video" domain shift.

Task names and instructions (``tasks``, ``language``) import without MuJoCo; the simulator-backed names are
loaded on first access so that ``import vlajepa.envs`` stays cheap for code that only needs task lists.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from vlajepa.envs.language import LANGUAGE, TaskLanguage, instruction  # noqa: E402
from vlajepa.envs.tasks import (  # noqa: E402
    ALL_TASKS,
    DEFAULT_MAX_STEPS,
    MAX_STEPS,
    MT10,
    UnknownTaskError,
    max_steps,
    resolve_task,
)

# public name -> module that defines it (imported on first access: these pull in mujoco and metaworld)
_LAZY: dict[str, str] = {
    "MetaWorldEnv": "vlajepa.envs.metaworld_env",
    "SimState": "vlajepa.envs.metaworld_env",
    "Perturbation": "vlajepa.envs.perturbations",
    "PERTURBATIONS": "vlajepa.envs.perturbations",
    "SEVERITIES": "vlajepa.envs.perturbations",
    "DomainShift": "vlajepa.envs.domain_shift",
    "DEFAULT_CAMERA": "vlajepa.envs.scene",
    "CAMERAS": "vlajepa.envs.scene",
    "CameraView": "vlajepa.envs.scene",
    "render_perturbation_grid": "vlajepa.envs.grid",
}

__all__ = [
    "ALL_TASKS",
    "CAMERAS",
    "DEFAULT_CAMERA",
    "DEFAULT_MAX_STEPS",
    "LANGUAGE",
    "MAX_STEPS",
    "MT10",
    "PERTURBATIONS",
    "SEVERITIES",
    "CameraView",
    "DomainShift",
    "MetaWorldEnv",
    "Perturbation",
    "SimState",
    "TaskLanguage",
    "UnknownTaskError",
    "instruction",
    "max_steps",
    "render_perturbation_grid",
    "resolve_task",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
