"""Policy server and client speaking openpi's websocket + msgpack protocol (see ``vlajepa.serve.server``).

Serve: ``vlajepa serve --checkpoint PATH`` or :class:`PolicyServer` / :class:`ServerThread` in Python. Use:
:class:`Client` (raw requests), :class:`RemotePolicy` (the policy protocol, for the evaluation harness) and
:class:`ActionChunkBroker` (one action per control tick). openpi's own ``WebsocketClientPolicy`` works
unchanged.
"""

from vlajepa.serve.auth import ApiKeyError, ApiKeys
from vlajepa.serve.background import ServerThread
from vlajepa.serve.broker import ActionChunkBroker
from vlajepa.serve.client import AuthenticationError, Client, RetryConfig, ServerError
from vlajepa.serve.codec import DecodeError, packb, unpackb
from vlajepa.serve.loading import LoadedPolicy, load_served_policy, spec_from_policy
from vlajepa.serve.observation import InputLimits, ObservationError, parse_observation
from vlajepa.serve.remote import RemotePolicy
from vlajepa.serve.server import PolicyServer, ServerConfig
from vlajepa.serve.spec import ImageSpec, PolicySpec

__all__ = [
    "ActionChunkBroker",
    "ApiKeyError",
    "ApiKeys",
    "AuthenticationError",
    "Client",
    "DecodeError",
    "ImageSpec",
    "InputLimits",
    "LoadedPolicy",
    "ObservationError",
    "PolicyServer",
    "PolicySpec",
    "RemotePolicy",
    "RetryConfig",
    "ServerConfig",
    "ServerError",
    "ServerThread",
    "load_served_policy",
    "packb",
    "parse_observation",
    "spec_from_policy",
    "unpackb",
]
