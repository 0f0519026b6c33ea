"""A synchronous client for the policy server (and for any openpi-protocol server).

It mirrors openpi's ``WebsocketClientPolicy`` — metadata on connect, ``infer(obs) -> {"actions": ...}`` — and
adds what a robot loop needs: bounded connection retries with exponential backoff (the server may still be
loading its checkpoint), a per-request timeout, ``reset``/``reseed`` control messages, and a typed
:class:`ServerError` for error replies. It never reconnects silently mid-session: a new connection would start
from fresh random state, so the caller decides.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from vlajepa.serve.codec import packb, unpackb
from vlajepa.serve.spec import ACK_KEY, CTRL_KEY, PolicySpec

logger = logging.getLogger(__name__)

# websockets >= 15 goes through environment proxies by default (the policy server is reached directly), and
# websockets >= 17 warns unless a long-lived connection opts into returning the connection object itself.
_CONNECT_OPTIONS = {
    name: value
    for name, value in (("proxy", None), ("legacy", True))
    if name in inspect.signature(connect).parameters
}


class ServerError(RuntimeError):
    """The server answered a request with an error message (the request was invalid or the policy failed)."""


@dataclass(frozen=True)
class RetryConfig:
    """How long to keep trying to connect: bounded both in attempts and in total time."""

    max_attempts: int = 20
    timeout_s: float = 60.0  # total time budget for connecting
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0


class Client:
    """``with Client("ws://127.0.0.1:8000") as client: actions = client.infer(obs)["actions"]``"""

    def __init__(
        self,
        url: str = "ws://127.0.0.1:8000",
        retry: RetryConfig | None = None,
        request_timeout_s: float | None = 60.0,
        max_message_bytes: int | None = 16 * 2**20,
    ) -> None:
        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        self.retry = retry or RetryConfig()
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        self._ws: ClientConnection | None = None
        self.metadata: dict[str, Any] = self._connect()

    @property
    def spec(self) -> PolicySpec:
        """The served policy's inputs and outputs, from the metadata frame."""
        return PolicySpec.from_metadata(self.metadata)

    def _connect(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.retry.timeout_s
        backoff = self.retry.initial_backoff_s
        for attempt in range(1, self.retry.max_attempts + 1):
            remaining = deadline - time.monotonic()
            try:
                self._ws = connect(
                    self.url,
                    compression=None,
                    max_size=self.max_message_bytes,
                    open_timeout=max(remaining, 0.1),
                    **_CONNECT_OPTIONS,
                )
                return unpackb(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            except InvalidURI:
                raise
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as err:
                self._close_socket()
                remaining = deadline - time.monotonic()
                if attempt == self.retry.max_attempts or remaining <= 0:
                    raise ConnectionError(
                        f"could not connect to the policy server at {self.url} ({attempt} attempts): {err}"
                    ) from err
                logger.info("policy server at %s not ready (%s); retrying in %.2f s", self.url, err, backoff)
                time.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")

    def _roundtrip(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionError("the client is closed")
        try:
            self._ws.send(packb(message))
            reply = self._ws.recv(timeout=self.request_timeout_s)
        except TimeoutError:
            # The late reply would be taken for the next request's: this connection is no longer usable.
            self.close()
            raise
        except ConnectionClosed as err:
            self.close()
            raise ConnectionError(f"the policy server at {self.url} closed the connection: {err}") from err
        if isinstance(reply, str):
            raise ServerError(reply)
        return unpackb(reply)

    def infer(self, observation: dict[str, Any]) -> dict[str, Any]:
        """Send one observation; return the reply ``{"actions": [H, D] float32, "server_timing": {...}}``."""
        return self._roundtrip(observation)

    def _control(self, command: str, **fields: Any) -> dict[str, Any]:
        reply = self._roundtrip({CTRL_KEY: command, **fields})
        if reply.get(ACK_KEY) != command:
            raise ServerError(f"unexpected reply to {command!r}: {reply!r:.200}")
        return reply

    def reset(self) -> None:
        """Start a new episode on the server (the policy's ``reset`` under this connection's state)."""
        self._control("reset")

    def reseed(self, seed: int) -> None:
        """Seed this connection's random state, as the evaluation harness seeds an in-process policy."""
        self._control("reseed", seed=int(seed))

    def _close_socket(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def close(self) -> None:
        self._close_socket()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
