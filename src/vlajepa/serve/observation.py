"""Turn a client's request into the observation a policy expects, or say exactly what is wrong with it.

Clients written for openpi and for LeRobot name things differently, so several spellings are accepted and
mapped to the LeRobot keys of ``vlajepa.constants``:

- the instruction as ``prompt`` (openpi) or ``task`` (LeRobot);
- ``/`` or ``.`` as separator (``observation/state`` = ``observation.state``), and nested maps
  (``{"observation": {"images": {"corner2": ...}}}``) flattened with ``.``;
- ``state`` for ``observation.state``, ``images.<camera>`` for ``observation.images.<camera>``, and ``image``
  / ``observation.image`` for the only camera of a one-camera policy;
- images as uint8 HWC, or CHW (transposed here), as openpi's ALOHA clients send them; of exactly the
  model's size, or of any size up to ``max_image_side`` when the policy resizes images itself
  (``ImageSpec.any_size``).

Anything else is refused with an :class:`ObservationError` listing every problem found: missing keys, wrong
types, dtypes or shapes, non-finite state, oversized images or prompts. Keys the policy does not read are
ignored. The server itself never resizes or rescales: the policy sees the same numbers remotely as in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vlajepa.constants import OBS_IMAGES, OBS_STATE, TASK
from vlajepa.serve.spec import PROMPT_KEY, ImageSpec, PolicySpec

MAX_KEYS = 256  # bounds the work spent on a hostile request
MAX_DEPTH = 4
MAX_PROBLEMS = 10  # problems listed in one error reply


class ObservationError(ValueError):
    """A request is not a valid observation for the served policy; the message names every problem."""


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what a request may contain, beyond the policy's own shapes."""

    max_prompt_chars: int = 2_000  # instructions are a sentence or two; refuse essays
    max_image_side: int = 1_024  # for policies that resize: larger images are refused, not shrunk at our cost


def _flatten(raw: dict, prefix: str, depth: int, out: dict[str, Any], problems: list[str]) -> None:
    for key, value in raw.items():
        if len(problems) >= MAX_PROBLEMS:
            return
        if not isinstance(key, str):
            problems.append(f"keys must be strings, got {type(key).__name__} {key!r:.40}")
            continue
        name = prefix + key.replace("/", ".")
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                problems.append(f"{name!r}: nested more than {MAX_DEPTH} levels deep")
            else:
                _flatten(value, name + ".", depth + 1, out, problems)
        elif len(out) >= MAX_KEYS:
            problems.append(f"more than {MAX_KEYS} keys")
            return
        else:
            out[name] = value


def _canonical_key(name: str, spec: PolicySpec) -> str:
    if name == PROMPT_KEY:
        return TASK
    if name == "state":
        return OBS_STATE
    if name.startswith("images."):
        return f"{OBS_IMAGES}.{name.removeprefix('images.')}"
    if name in ("image", "observation.image") and len(spec.images) == 1:
        return spec.images[0].key
    return name


def _check_image(
    key: str, value: Any, image: ImageSpec, max_side: int, problems: list[str]
) -> np.ndarray | None:
    expected = "(H, W, 3) uint8" if image.any_size else f"{image.shape} uint8"
    if not isinstance(value, np.ndarray):
        problems.append(f"{key!r}: expected an array of shape {expected}, got {type(value).__name__}")
        return None
    if value.dtype != np.uint8:
        problems.append(f"{key!r}: expected dtype uint8, got {value.dtype}")
        return None
    channels = image.channels
    if value.ndim == 3 and value.shape[0] == channels and value.shape[2] != channels:
        value = value.transpose(1, 2, 0)  # CHW -> HWC
    if value.ndim != 3 or value.shape[2] != channels:
        problems.append(f"{key!r}: expected shape {expected} (HWC, or CHW), got {value.shape}")
        return None
    height, width = value.shape[:2]
    if image.any_size:
        if max(height, width) > max_side:
            problems.append(f"{key!r}: image too large: {height}x{width}, the limit is {max_side} per side")
            return None
        if min(height, width) == 0:
            problems.append(f"{key!r}: empty image of shape {value.shape}")
            return None
    elif value.shape != image.shape:
        size = "image too large: " if value.size > int(np.prod(image.shape)) else ""
        problems.append(f"{key!r}: {size}expected shape {expected} (HWC, or CHW), got {value.shape}")
        return None
    return np.ascontiguousarray(value)


def _check_state(value: Any, state_dim: int, problems: list[str]) -> np.ndarray | None:
    if isinstance(value, list) and all(type(v) in (int, float) for v in value):
        value = np.asarray(value, dtype=np.float64)
    if not isinstance(value, np.ndarray):
        kind = type(value).__name__
        problems.append(f"{OBS_STATE!r}: expected a float array of shape ({state_dim},), got {kind}")
        return None
    if value.dtype.kind != "f":
        problems.append(f"{OBS_STATE!r}: expected a float array, got dtype {value.dtype}")
        return None
    if value.shape != (state_dim,):
        problems.append(f"{OBS_STATE!r}: expected shape ({state_dim},), got {value.shape}")
        return None
    if not np.isfinite(value).all():
        problems.append(f"{OBS_STATE!r}: contains NaN or infinite values")
        return None
    return value.astype(np.float32)


def _check_task(value: Any, limits: InputLimits, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{PROMPT_KEY!r}/{TASK!r}: expected a string instruction, got {type(value).__name__}")
        return None
    if len(value) > limits.max_prompt_chars:
        problems.append(f"{PROMPT_KEY!r}: {len(value)} characters, over the limit {limits.max_prompt_chars}")
        return None
    return value


def parse_observation(request: Any, spec: PolicySpec, limits: InputLimits | None = None) -> dict[str, Any]:
    """Validate ``request`` against ``spec``: ``{image keys: uint8 HWC, state: float32, task: str}``."""
    limits = limits or InputLimits()
    if not isinstance(request, dict):
        raise ObservationError(f"an observation must be a map, got {type(request).__name__}")
    problems: list[str] = []
    flat: dict[str, Any] = {}
    _flatten(request, "", 0, flat, problems)

    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in flat.items():
        key = _canonical_key(name, spec)
        if key in sources:
            problems.append(f"{sources[key]!r} and {name!r} both give {key!r}; send one")
            continue
        sources[key] = name
        fields[key] = value

    required = [*spec.image_keys, *([OBS_STATE] if spec.state_dim else []), TASK]
    missing = [key for key in required if key not in fields]
    if missing:
        received = sorted(flat)[:20]
        problems.append(f"missing keys {missing} (received {received})")

    observation: dict[str, Any] = {}
    for image in spec.images:
        if image.key in fields:
            observation[image.key] = _check_image(
                image.key, fields[image.key], image, limits.max_image_side, problems
            )
    if spec.state_dim and OBS_STATE in fields:
        observation[OBS_STATE] = _check_state(fields[OBS_STATE], spec.state_dim, problems)
    if TASK in fields:
        observation[TASK] = _check_task(fields[TASK], limits, problems)

    if problems:
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise ObservationError("; ".join(problems[:MAX_PROBLEMS]) + more)
    return observation
