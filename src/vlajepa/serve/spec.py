"""What a served policy expects and returns, and the metadata frame that tells clients so.

The server validates every request against a :class:`PolicySpec` before the policy sees it, and sends
:meth:`PolicySpec.metadata` to each client on connect (openpi's "metadata frame"), so a client can check its
camera names, image sizes, state size and action shape against the model before the first request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlajepa.constants import OBS_STATE, TASK

PROTOCOL = "openpi-websocket-msgpack"  # what the metadata frame calls the wire protocol
PROMPT_KEY = "prompt"  # openpi clients send the instruction under this key; it maps to ``TASK``
CTRL_KEY = "__ctrl__"  # a request holding this key is a control message (reset, reseed, ...)
ACK_KEY = "__ack__"  # the reply to a control message names it under this key


@dataclass(frozen=True)
class ImageSpec:
    """One camera stream the policy reads."""

    key: str  # LeRobot feature key, e.g. "observation.images.corner2"
    height: int  # pixels the model sees
    width: int
    channels: int = 3  # RGB
    any_size: bool = False  # True: the policy resizes images itself, so any height and width are accepted

    @property
    def shape(self) -> tuple[int, int, int]:
        """Expected array shape, HWC."""
        return (self.height, self.width, self.channels)

    @property
    def camera(self) -> str:
        """Camera name: the last component of the key."""
        return self.key.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class PolicySpec:
    """Inputs and outputs of a served policy; derived from its config (see ``vlajepa.serve.loading``)."""

    action_dim: int  # D of each [H, D] action chunk
    chunk_length: int  # H: actions predicted per request
    state_dim: int  # length of ``observation.state``; 0 when the policy reads no state
    images: tuple[ImageSpec, ...]  # camera streams, in the policy's order
    n_action_steps: int | None = None  # actions a client should execute per chunk (None: all H)
    model: dict[str, Any] = field(default_factory=dict)  # free-form model info (class, size, checkpoint)

    def __post_init__(self) -> None:
        if self.action_dim <= 0 or self.chunk_length <= 0 or self.state_dim < 0:
            raise ValueError(f"invalid policy spec dimensions: {self}")
        if not self.images:
            raise ValueError("a policy spec needs at least one image stream")

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(image.key for image in self.images)

    def metadata(self) -> dict[str, Any]:
        """The metadata frame: plain msgpack types only, so any client (any language) can read it."""
        observation: dict[str, Any] = {
            image.key: {
                "shape": list(image.shape),
                "dtype": "uint8",
                "layout": "HWC",
                "any_size": image.any_size,
            }
            for image in self.images
        }
        if self.state_dim:
            observation[OBS_STATE] = {"shape": [self.state_dim], "dtype": "float32"}
        observation[TASK] = {"dtype": "str", "aliases": [PROMPT_KEY]}
        return {
            "protocol": PROTOCOL,
            "server": "vlajepa",
            "action_dim": self.action_dim,
            "action_horizon": self.chunk_length,  # openpi's name for the chunk length
            "chunk_length": self.chunk_length,
            "n_action_steps": self.n_action_steps or self.chunk_length,
            "action_shape": [self.chunk_length, self.action_dim],
            "action_dtype": "float32",
            "observation": observation,
            "prompt_key": PROMPT_KEY,
            "model": dict(self.model),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> PolicySpec:
        """Rebuild the spec a server announced (client side)."""
        images, state_dim = [], 0
        for key, feature in metadata["observation"].items():
            if key == OBS_STATE:
                state_dim = int(feature["shape"][0])
            elif key != TASK:
                height, width, channels = (int(n) for n in feature["shape"])
                images.append(ImageSpec(key, height, width, channels, bool(feature.get("any_size", False))))
        return cls(
            action_dim=int(metadata["action_dim"]),
            chunk_length=int(metadata["chunk_length"]),
            state_dim=state_dim,
            images=tuple(images),
            n_action_steps=metadata.get("n_action_steps"),
            model=dict(metadata.get("model", {})),
        )
