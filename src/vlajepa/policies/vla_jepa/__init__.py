"""VLA-JEPA (type ``vla_jepa``): a student over the current observation and instruction, a latent world model
conditioned on its latent-action tokens, and a flow-matching action head; BC is the same policy without the world
model (``use_world_model: false``)."""

from vlajepa.policies.vla_jepa.configuration import StudentConfig, VLAJEPAConfig
from vlajepa.policies.vla_jepa.modeling import VLAJEPAPolicy

__all__ = ["StudentConfig", "VLAJEPAConfig", "VLAJEPAPolicy"]
