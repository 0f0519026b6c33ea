"""World-model action selection (type ``planner``): a policy that wraps a base policy, imagines each of its
candidate chunks with an action- and language-conditioned latent world model and executes the one whose imagined
outcome best fits the instruction."""

from vlajepa.policies.planning.configuration import PlannerConfig, ScoreConfig, WorldModelConfig
from vlajepa.policies.planning.modeling import PlannerHeads, PlannerPolicy

__all__ = ["PlannerConfig", "PlannerHeads", "PlannerPolicy", "ScoreConfig", "WorldModelConfig"]
