"""Policies as registered siblings: each is a :class:`PreTrainedPolicy` with a :class:`~vlajepa.config.PolicyConfig`
whose ``type`` names it. Importing this package registers the built-in ones.

- ``vla_jepa`` (:mod:`vlajepa.policies.vla_jepa`): VLA-JEPA, and BC as VLA-JEPA without the world model;
- ``lapa`` (:mod:`vlajepa.policies.lapa`): the LAPA baseline on the same student and action head;
- ``planner`` (:mod:`vlajepa.policies.planning`): world-model action selection around a base policy.
"""

from vlajepa.policies.base import (
    PreTrainedPolicy,
    load_policy,
    load_policy_config,
    make_policy,
    policy_class,
    registered_policies,
)
from vlajepa.policies.lapa import LAPAConfig, LAPAPolicy
from vlajepa.policies.planning import PlannerConfig, PlannerPolicy
from vlajepa.policies.protocol import Plan, Policy, seed_policy
from vlajepa.policies.vla_jepa import VLAJEPAConfig, VLAJEPAPolicy

__all__ = [
    "LAPAConfig",
    "LAPAPolicy",
    "Plan",
    "PlannerConfig",
    "PlannerPolicy",
    "Policy",
    "PreTrainedPolicy",
    "VLAJEPAConfig",
    "VLAJEPAPolicy",
    "load_policy",
    "load_policy_config",
    "make_policy",
    "policy_class",
    "registered_policies",
    "seed_policy",
]
