"""LAPA (type ``lapa``), the latent-action-pretraining baseline: a latent action model quantizes frame pairs into a
few discrete codes (:mod:`~vlajepa.policies.lapa.lam`, trained by ``vlajepa train-lam``); VLA-JEPA's student is
pretrained to predict those codes from the current observation, then fine-tuned with the flow-matching action
head on robot actions."""

from vlajepa.policies.lapa.configuration import LAMConfig, LAMTrainConfig, LAPAConfig
from vlajepa.policies.lapa.lam import LatentActionModel, load_lam_config
from vlajepa.policies.lapa.modeling import LAPAPolicy

__all__ = ["LAMConfig", "LAMTrainConfig", "LAPAConfig", "LAPAPolicy", "LatentActionModel", "load_lam_config"]
