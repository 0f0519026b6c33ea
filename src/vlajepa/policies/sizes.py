"""Parameter counts of a policy config without weights: the policy is built on PyTorch's meta device, where tensors
have shapes but no storage, so even a paper-scale config (a 2B-parameter VLM) is counted in seconds on any machine
and no weights file is read."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from torch import nn

from vlajepa.config import PolicyConfig
from vlajepa.policies.base import make_policy, policy_class

# Parts reported (VLA-JEPA's, and LAPA's code head): (label, dotted module paths); the first path that exists counts.
_PARTS = (
    ("student.vision", ("student.vlm.model.visual", "student.vision")),
    ("student.language", ("student.vlm.model.language_model", "student.language")),
    ("target", ("target",)),
    ("predictor", ("predictor",)),
    ("action_head", ("action_head",)),
    ("code_head", ("code_head",)),
)
# Constructor switches that skip reading weight files, passed to the policy classes that have them.
_NO_WEIGHT_FILES = {"load_target_weights": False, "load_backbone_weights": False, "load_lam": False}


def _numel(parameters: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)


def build_without_weights(config: PolicyConfig) -> tuple[nn.Module, str]:
    """The policy built on the meta device, and ``"meta"``; where a part must read a file to exist at all (the
    frozen MiniLM instruction encoder of the native student is loaded by ``from_pretrained``), built on the CPU
    instead (such configs are small), and ``"cpu"``. Frozen targets', VLMs' and latent action models' weight files
    are never read."""
    accepted = inspect.signature(policy_class(config.type).__init__).parameters
    kwargs = {key: value for key, value in _NO_WEIGHT_FILES.items() if key in accepted}
    try:
        with torch.device("meta"):
            return make_policy(config, **kwargs), "meta"
    except RuntimeError as err:
        if "meta" not in str(err):
            raise
    return make_policy(config, **kwargs), "cpu"


def parameter_counts(config: PolicyConfig) -> dict[str, int]:
    """Parameters per part of the policy ``config`` describes (``student.rest``: the student's other modules,
    e.g. query embeddings and projections), plus ``trainable`` (everything but frozen targets) and ``total``."""
    policy, _ = build_without_weights(config)
    modules = dict(policy.named_modules())
    counts: dict[str, int] = {}
    counted: set[int] = set()
    for label, paths in _PARTS:
        module = next((modules[path] for path in paths if path in modules), None)
        if module is not None:
            params = [p for p in module.parameters() if id(p) not in counted]
            counted.update(id(p) for p in params)
            counts[label] = _numel(params)
    student = modules.get("student")
    if student is not None:
        counts["student.rest"] = _numel(p for p in student.parameters() if id(p) not in counted)
    frozen = policy.frozen_target()
    counts["trainable"] = _numel(policy.parameters()) - (_numel(frozen.parameters()) if frozen is not None else 0)
    counts["total"] = _numel(policy.parameters())
    return counts
