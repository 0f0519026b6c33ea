"""vlajepa: vision-language-action policies pretrained with a JEPA latent world model.

``from vlajepa import VLAJEPAPolicy, PlannerPolicy, LAPAPolicy, load_policy`` — the names are resolved lazily, so
importing the package (and ``vlajepa --help``) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "VLAJEPAConfig": "vlajepa.policies.vla_jepa",
    "VLAJEPAPolicy": "vlajepa.policies.vla_jepa",
    "LAPAConfig": "vlajepa.policies.lapa",
    "LAPAPolicy": "vlajepa.policies.lapa",
    "PlannerConfig": "vlajepa.policies.planning",
    "PlannerPolicy": "vlajepa.policies.planning",
    "PreTrainedPolicy": "vlajepa.policies",
    "load_policy": "vlajepa.policies",
    "make_policy": "vlajepa.policies",
}
__all__ = [
    "LAPAConfig",
    "LAPAPolicy",
    "PlannerConfig",
    "PlannerPolicy",
    "PreTrainedPolicy",
    "VLAJEPAConfig",
    "VLAJEPAPolicy",
    "__version__",
    "load_policy",
    "make_policy",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlajepa' has no attribute {name!r}")
