"""Load a checkpoint for serving and derive what the server announces and checks from the policy's config.

The server never trusts a request to match the model: it checks each one against a :class:`PolicySpec` built
here from the policy's config (cameras, image size, state and action widths, chunk length: the interface every
:class:`~vlajepa.config.PolicyConfig` declares), so any registered policy serves without a special case. An object
without such a config can still be served by giving it a ``serving_spec() -> PolicySpec`` method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlajepa.constants import image_key
from vlajepa.serve.spec import ImageSpec, PolicySpec


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy ready to serve and its spec."""

    policy: Any  # implements reset() / predict_action_chunk(obs) (vlajepa.policies.protocol.Policy)
    spec: PolicySpec


def _parameter_count(policy: Any) -> int | None:
    parameters = getattr(policy, "parameters", None)
    if not callable(parameters):
        return None
    return int(sum(p.numel() for p in parameters()))


def spec_from_policy(policy: Any, checkpoint: str | Path | None = None) -> PolicySpec:
    """The spec of ``policy``: its own ``serving_spec()`` if it has one, else built from ``policy.config``."""
    serving_spec = getattr(policy, "serving_spec", None)
    if callable(serving_spec):
        return serving_spec()
    config = getattr(policy, "config", None)
    if config is None:
        raise TypeError(f"{type(policy).__name__} has neither serving_spec() nor a config to build a spec")
    size = int(config.image_size)
    cls = type(policy)
    model: dict[str, Any] = {"name": cls.__name__, "class": f"{cls.__module__}.{cls.__qualname__}"}
    count = _parameter_count(policy)
    if count is not None:
        model["parameters"] = count
    if checkpoint is not None:
        model["checkpoint"] = str(checkpoint)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        model["config"] = to_dict()
    # A policy answers with the first n_action_steps of its chunk_size actions.
    chunk_length = int(getattr(policy, "n_action_steps", None) or config.chunk_size)
    model["chunk_size"] = int(config.chunk_size)
    uses_state = bool(getattr(config, "uses_state", True))
    return PolicySpec(
        action_dim=int(config.action_dim),
        chunk_length=chunk_length,
        state_dim=int(config.state_dim) if uses_state else 0,
        # The policy's processor resizes every camera image to image_size (the harness renders at its own size).
        images=tuple(ImageSpec(image_key(camera), size, size, any_size=True) for camera in config.cameras),
        n_action_steps=chunk_length,
        model=model,
    )


def load_served_policy(checkpoint_path: str | Path, **options: Any) -> LoadedPolicy:
    """Load any registered policy's checkpoint directory in eval mode, with its spec; ``options`` go to the
    policy's ``__init__`` (e.g. a planner's ``num_candidates``)."""
    from vlajepa.policies import load_policy  # lazy: importing the model pulls in torch and the networks

    policy = load_policy(checkpoint_path, **options)
    return LoadedPolicy(policy, spec_from_policy(policy, checkpoint=Path(checkpoint_path)))
