"""Feature keys shared by datasets, environments, policies and the server (LeRobot naming)."""

OBS_IMAGES = "observation.images"  # prefix: one key per camera, e.g. "observation.images.corner2"
OBS_STATE = "observation.state"
ACTION = "action"
TASK = "task"
PAD_SUFFIX = "_is_pad"


def image_key(camera: str) -> str:
    """LeRobot feature key of the RGB stream of ``camera``."""
    return f"{OBS_IMAGES}.{camera}"
