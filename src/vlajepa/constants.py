"""Feature keys shared by datasets, environments, policies and the server (LeRobot naming), and the camera option
that names their image streams."""

from collections.abc import Sequence

OBS_IMAGES = "observation.images"  # prefix: one key per camera, e.g. "observation.images.corner2"
OBS_STATE = "observation.state"
OBS_ENV_STATE = "observation.environment_state"  # simulator scene state: a training label, never a policy input
ACTION = "action"
TASK = "task"
# What a frame's action led to (LeRobot's ``next.*`` naming) and the task progress of the frame's own observation.
REWARD = "next.reward"  # float32: the environment's reward for the frame's action
SUCCESS = "next.success"  # bool: the task is solved after the frame's action
DONE = "next.done"  # bool: the frame's action ended the episode (its last frame)
PROGRESS = "progress"  # float32 in [0, 1]: task progress of the frame's observation (envs.metaworld_env)
PAD_SUFFIX = "_is_pad"


def image_key(camera: str) -> str:
    """LeRobot feature key of the RGB stream of ``camera``."""
    return f"{OBS_IMAGES}.{camera}"


def camera_setting(camera: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """A camera option as the collection and evaluation configs hold it: ``None`` (the environment's default), one
    name, or a tuple of several. A list (from JSON or a caller) becomes a tuple, so the config stays hashable, and a
    single camera is its name however it was given, so one-camera runs record the same config either way."""
    if camera is None or isinstance(camera, str):
        return camera
    cameras = tuple(camera)
    return cameras[0] if len(cameras) == 1 else cameras
ACTION_IS_PAD = ACTION + PAD_SUFFIX  # bool (H,): action steps past the episode end (masked out of the loss)

# Future clip of the world model (target-encoder input only, never the student's).
FUTURE_IMAGES = "future.images"  # prefix: one key per camera, e.g. "future.images.corner2", (T, 3, H, W)
FUTURE_IS_PAD = "future_is_pad"  # bool (T,): clip frames past the episode end (left out of the loss)
FUTURE_LATENTS = "future.latents"  # optional: frozen-target latents of the clip, precomputed (latent cache)
FUTURE_FRAME_IDS = "future.frame_ids"  # int64 (T,): rows of the clip's frames in a latent cache
FUTURE_VALUE = "future.value"  # float (T,): planner score targets of the clip's frames (discounted success)


def future_image_key(camera: str) -> str:
    """Batch key of the future clip of ``camera``."""
    return f"{FUTURE_IMAGES}.{camera}"
