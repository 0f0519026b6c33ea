"""A policy that lives behind a policy server: the evaluation harness drives it like an in-process one.

``RemotePolicy(url)`` implements the policy protocol (``reset``, ``predict_action_chunk``) and the harness's
optional ``reseed``, each forwarded over one connection. The server keeps a random state per connection and
seeds it exactly as the harness seeds an in-process policy (``vlajepa.serve.runner``), so with the server's
default ``max_batch=1`` a seeded evaluation through the server returns the same actions as the same checkpoint
in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlajepa.serve.client import Client, RetryConfig
from vlajepa.serve.spec import PolicySpec


class RemotePolicy:
    """The policy served at ``url``, through one :class:`Client` connection."""

    def __init__(
        self,
        url: str,
        retry: RetryConfig | None = None,
        request_timeout_s: float | None = 60.0,
        api_key: str | None = None,
        api_key_file: str | Path | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        """``api_key``/``api_key_file``/``ca_file``: see :class:`Client` (the key defaults to
        ``$VLAJEPA_API_KEY``)."""
        self.client = Client(
            url,
            retry=retry,
            request_timeout_s=request_timeout_s,
            api_key=api_key,
            api_key_file=api_key_file,
            ca_file=ca_file,
        )

    @property
    def metadata(self) -> dict[str, Any]:
        return self.client.metadata

    @property
    def spec(self) -> PolicySpec:
        return self.client.spec

    def reset(self) -> None:
        self.client.reset()

    def reseed(self, seed: int) -> None:
        self.client.reseed(seed)

    def predict_action_chunk(self, observation: dict[str, Any]) -> np.ndarray:
        return self.client.infer(observation)["actions"]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
