"""A synchronous client for the policy server (and for any openpi-protocol server).

It mirrors openpi's ``WebsocketClientPolicy`` — metadata on connect, ``infer(obs) -> {"actions": ...}`` — and
adds what a robot loop needs: bounded connection retries with exponential backoff (the server may still be
loading its checkpoint), a per-request timeout, ``reset``/``reseed`` control messages, and a typed
:class:`ServerError` for error replies. It never reconnects silently mid-session: a new connection would start
from fresh random state, so the caller decides.

Authentication and TLS: the API key (``api_key=``, else the first key of ``api_key_file=``, else the
``VLAJEPA_API_KEY`` environment variable) travels in the handshake as ``Authorization: Api-Key <key>``, never
in the URL. A ``wss://`` URL is verified against the system's certificate authorities, or against ``ca_file``
(e.g. a robot network's own CA or a self-signed server certificate).
"""

from __future__ import annotations

import inspect
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from vlajepa.serve.auth import authorization_header, client_api_key, redacted_logger
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


class AuthenticationError(ConnectionError):
    """The server refused the handshake's API key (HTTP 401/403), or its TLS certificate failed verification.
    Not retried: waiting does not fix it."""


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
        api_key: str | None = None,
        api_key_file: str | Path | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        self.url = url if url.startswith(("ws://", "wss://")) else f"ws://{url}"
        self.retry = retry or RetryConfig()
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        key = client_api_key(api_key, api_key_file)
        self._headers = authorization_header(key) if key is not None else None
        secure = self.url.startswith("wss://")
        if ca_file is not None and not secure:
            raise ValueError(f"ca_file applies to wss:// URLs, not {self.url}")
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file is not None else None
        if key is not None and not secure and urlsplit(self.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("sending an API key to %s without TLS: anyone on the network can read it", self.url)
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
                    additional_headers=self._headers,
                    ssl=self._ssl,
                    logger=redacted_logger("vlajepa.serve.client.websockets"),
                    **_CONNECT_OPTIONS,
                )
                return unpackb(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            except InvalidURI:
                raise
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as err:
                self._close_socket()
                self._raise_if_refused(err)
                remaining = deadline - time.monotonic()
                if attempt == self.retry.max_attempts or remaining <= 0:
                    raise ConnectionError(
                        f"could not connect to the policy server at {self.url} ({attempt} attempts): {err}"
                    ) from err
                logger.info("policy server at %s not ready (%s); retrying in %.2f s", self.url, err, backoff)
                time.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, self.retry.max_backoff_s)
        raise AssertionError("unreachable")

    def _raise_if_refused(self, err: BaseException) -> None:
        """Raise :class:`AuthenticationError` for a refusal that retrying cannot fix (key or certificate)."""
        if isinstance(err, InvalidStatus) and err.response.status_code in (401, 403):
            given = "no API key was sent" if self._headers is None else "the API key was refused"
            raise AuthenticationError(
                f"the policy server at {self.url} refused the connection (HTTP {err.response.status_code}): "
                f"{given}; pass api_key= or api_key_file=, or set VLAJEPA_API_KEY"
            ) from None
        if isinstance(err, ssl.SSLCertVerificationError):
            raise AuthenticationError(
                f"the TLS certificate of {self.url} failed verification ({err.verify_message}); pass the "
                "certificate authority that signed it as ca_file="
            ) from None

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
