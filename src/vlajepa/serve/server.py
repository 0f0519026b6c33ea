"""The policy server: openpi's websocket protocol in front of a vlajepa policy.

Protocol (what openpi's ``WebsocketClientPolicy`` expects, plus a few control messages of our own):

1. The client opens a websocket; the server sends one binary msgpack frame, the metadata
   (:meth:`PolicySpec.metadata`: action shape, expected observation keys/shapes/dtypes, model info).
2. Each request is one binary msgpack frame holding an observation map (see ``vlajepa.serve.observation`` for
   the accepted keys); the reply is a binary frame ``{"actions": float32 [H, D], "server_timing": {...}}``.
3. A request that cannot be served gets a *text* frame naming the problem — openpi's client raises it as a
   ``RuntimeError`` — and the connection stays open: a client may fix its request and retry.
4. Control messages are maps with ``"__ctrl__"``: ``"reset"`` (start an episode), ``"reseed"`` with ``"seed"``
   (seed this connection as the evaluation harness seeds an in-process policy), ``"episode_start"`` (= reset),
   ``"episode_end"``, ``"metadata"``; each is acknowledged with ``{"__ack__": name}``.

``GET /healthz`` on the same port answers ``200 ok`` (no key needed: it reveals nothing and load balancers and
supervisors call it). Requests of one connection are answered in order; each connection keeps its own random
state (``vlajepa.serve.runner``).

Hardening for a robot network (see ``docs/serving.md``):

- **API keys** (:class:`~vlajepa.serve.auth.ApiKeys`): a handshake without ``Authorization: Api-Key <key>``
  holding a configured key gets HTTP 401 before any websocket frame is exchanged; keys in the URL are ignored.
- **TLS**: with a certificate and key the server speaks ``wss://``.
- **Limits**: at most ``max_connections`` admitted (authenticated) connections, further handshakes get HTTP
  503; a connection silent for ``idle_timeout_s`` is closed (code 1000); frames beyond ``max_requests_per_s``
  on one connection (a token bucket holding one second's worth) get an error reply without touching the policy.
- **Drain** (:meth:`PolicyServer.close`, which ``vlajepa serve`` calls on SIGTERM): stop listening, answer the
  requests already being served, close every connection with code 1001, then stop the inference thread.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, Server, ServerConnection, serve
from websockets.protocol import State

from vlajepa.serve.auth import AUTH_HEADER, AUTH_SCHEME, ApiKeys, redacted_logger
from vlajepa.serve.codec import DecodeError, packb, unpackb
from vlajepa.serve.engine import InferenceEngine
from vlajepa.serve.observation import InputLimits, ObservationError, parse_observation
from vlajepa.serve.runner import PolicyRunner, Session
from vlajepa.serve.spec import ACK_KEY, CTRL_KEY, PolicySpec

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and what it accepts."""

    host: str = "127.0.0.1"  # loopback by default; anything else should use api_keys and TLS
    port: int = 8000  # 0 picks a free port (see PolicyServer.port)
    max_batch: int = 1  # >1 merges concurrent requests into one forward pass (not reproducible per session)
    batch_wait_s: float = 0.0  # extra wait for a batch to fill; 0 batches only requests already waiting
    max_message_bytes: int = 16 * 2**20  # larger frames close the connection (websocket code 1009)
    max_connections: int = 64  # admitted connections; further handshakes get HTTP 503
    limits: InputLimits = field(default_factory=InputLimits)
    api_keys: ApiKeys | None = None  # None: no authentication (loopback use only)
    tls_cert: str | Path | None = None  # PEM certificate chain; with tls_key, serve wss://
    tls_key: str | Path | None = None  # PEM private key of tls_cert
    idle_timeout_s: float = 600.0  # close a connection silent this long; 0: never
    max_requests_per_s: float = 100.0  # per connection, averaged over one second; 0: unlimited
    drain_timeout_s: float = 30.0  # on close, how long in-flight requests may take before connections drop

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate (tls_cert) and its private key (tls_key)")
        for name in ("max_connections", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("idle_timeout_s", "max_requests_per_s", "drain_timeout_s", "batch_wait_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def server_ssl_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context from a PEM certificate chain and its private key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"cannot load the TLS certificate {cert} with key {key}: {err}") from None
    return context


class _RateLimit:
    """A token bucket: ``rate`` frames per second on average, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def allow(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class _Connection:
    """What the server tracks per open connection."""

    websocket: ServerConnection
    busy: bool = False  # a request is being served (drain waits for it)


class RequestError(Exception):
    """A request that gets an error reply; ``str(err)`` is the reply text."""


class PolicyServer:
    """Serves ``policy`` (validated against ``spec``) over websockets; use ``async with`` or start/close."""

    def __init__(self, policy: Any, spec: PolicySpec, config: ServerConfig | None = None) -> None:
        self.spec = spec
        self.config = config or ServerConfig()
        self.runner = PolicyRunner(policy)
        self.engine = InferenceEngine(self.runner, self.config.max_batch, self.config.batch_wait_s)
        if self.config.max_batch > 1 and not self.runner.supports_batch:
            name = type(policy).__name__
            logger.warning("%s has no predict_action_chunk_batch: one request per forward pass", name)
        self.metadata = {**spec.metadata(), "max_batch": self.engine.max_batch}
        self._metadata_frame = packb(self.metadata)
        self._server: Server | None = None
        self._admitted: set[ServerConnection] = set()  # passed the handshake checks, not closed yet
        self._open: dict[ServerConnection, _Connection] = {}  # running in _handle
        self._draining = False
        self.refused = {"unauthorized": 0, "over_capacity": 0}  # handshakes refused since start

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        assert self._server is not None, "the server is not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{'wss' if self.config.tls else 'ws'}://{host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections admitted and not yet closed."""
        return len(self._live_admitted())

    async def start(self) -> None:
        config = self.config
        context = server_ssl_context(config.tls_cert, config.tls_key) if config.tls else None
        if config.host not in LOOPBACK_HOSTS:
            if config.api_keys is None:
                logger.warning("binding %s without API keys: anyone who reaches the port drives the policy",
                               config.host)  # fmt: skip
            if not config.tls:
                logger.warning("binding %s without TLS: requests and API keys cross the network in clear",
                               config.host)  # fmt: skip
        await self.engine.start()
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._process_request,
            compression=None,
            max_size=config.max_message_bytes,
            ssl=context,
            logger=redacted_logger("vlajepa.serve.websockets"),
        )
        auth = f"{len(config.api_keys)} API key(s)" if config.api_keys is not None else "no authentication"
        logger.info("serving %s on %s (%s)", self.spec.model.get("name", "policy"), self.url, auth)

    async def close(self) -> None:
        """Drain and stop: refuse new connections, answer in-flight requests, close every connection (1001).

        Requests still running after ``drain_timeout_s`` are abandoned and their connections dropped.
        """
        if self._server is not None and not self._draining:
            self._draining = True
            self._server.close(close_connections=False)  # stop listening; handshakes under way get 503
            idle = [conn.websocket for conn in self._open.values() if not conn.busy]
            busy = len(self._open) - len(idle)
            logger.info("draining: %d request(s) in flight, closing %d idle connection(s)", busy, len(idle))
            for websocket in idle:  # the busy ones close themselves after their reply (see _handle)
                asyncio.create_task(websocket.close(1001, "server shutting down"))
            try:
                async with asyncio.timeout(self.config.drain_timeout_s):
                    await self._server.wait_closed()
            except TimeoutError:
                logger.warning("drain timed out after %.0f s; dropping %d connection(s)",
                               self.config.drain_timeout_s, len(self._open))  # fmt: skip
                for conn in list(self._open.values()):
                    conn.websocket.transport.abort()
                try:  # a handler still waiting on a stuck forward pass is left behind
                    async with asyncio.timeout(5.0):
                        await self._server.wait_closed()
                except TimeoutError:
                    logger.error("%d connection handler(s) did not stop", len(self._open))
        await self.engine.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None, "call start() first"
        await self._server.serve_forever()

    async def __aenter__(self) -> PolicyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _live_admitted(self) -> set[ServerConnection]:
        # A connection admitted at the handshake whose handshake then failed never reaches _handle; it is
        # dropped here once closed, so it cannot hold a slot.
        self._admitted = {c for c in self._admitted if c.state is not State.CLOSED}
        return self._admitted

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        keys = self.config.api_keys
        if keys is not None:
            values = request.headers.get_all(AUTH_HEADER)
            if len(values) != 1 or not keys.accepts(values[0]):
                self.refused["unauthorized"] += 1
                logger.info("refused %s: no valid API key", connection.remote_address)
                response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "a valid API key is required\n")
                response.headers["WWW-Authenticate"] = AUTH_SCHEME
                return response
        # Counted when admitted, not when the handler starts: handshakes under way cannot overshoot the limit.
        if len(self._live_admitted()) >= self.config.max_connections:
            self.refused["over_capacity"] += 1
            logger.info("refused %s: %d connections open", connection.remote_address, len(self._admitted))
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        self._admitted.add(connection)
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        conn = self._open[websocket] = _Connection(websocket)
        session = self.runner.new_session()
        rate = _RateLimit(self.config.max_requests_per_s)
        idle_s = self.config.idle_timeout_s or None
        logger.info("connection %d from %s opened", session.id, websocket.remote_address)
        try:
            await websocket.send(self._metadata_frame)
            previous_total_ms: float | None = None
            while not self._draining:
                try:
                    async with asyncio.timeout(idle_s):
                        message = await websocket.recv()
                except TimeoutError:
                    logger.info("connection %d idle for %.0f s: closing", session.id, idle_s)
                    await websocket.close(1000, "idle timeout")
                    break
                conn.busy = True
                started = time.perf_counter()
                try:
                    if not rate.allow():
                        raise RequestError(
                            f"rate limit: more than {self.config.max_requests_per_s:g} requests per second "
                            "on this connection"
                        )
                    reply: str | bytes = await self._respond(session, message, previous_total_ms)
                except RequestError as err:
                    logger.info("connection %d: %s", session.id, err)
                    reply = str(err)
                except Exception as err:  # noqa: BLE001 - one bad request must not end the connection
                    logger.exception("connection %d: internal error", session.id)
                    reply = f"internal error: {type(err).__name__}: {err}"
                await websocket.send(reply)
                conn.busy = False
                previous_total_ms = (time.perf_counter() - started) * 1e3
            if self._draining:
                await websocket.close(1001, "server shutting down")
        except websockets.ConnectionClosed:
            pass  # an abrupt disconnect ends this connection only
        finally:
            del self._open[websocket]
            self._admitted.discard(websocket)
            logger.info("connection %d closed after %d requests", session.id, session.requests)

    async def _respond(
        self, session: Session, message: str | bytes, previous_total_ms: float | None
    ) -> bytes:
        if isinstance(message, str):
            raise RequestError("bad message: expected a binary msgpack frame, got a text frame")
        try:
            request = unpackb(message)
        except DecodeError as err:
            raise RequestError(f"bad message: {err}") from None
        if isinstance(request, dict) and CTRL_KEY in request:
            return await self._control(session, request)
        try:
            observation = parse_observation(request, self.spec, self.config.limits)
        except ObservationError as err:
            raise RequestError(f"invalid observation: {err}") from None
        try:
            result = await self.engine.infer(session, observation)
        except Exception as err:  # noqa: BLE001 - the policy's failure is reported, the server keeps serving
            raise RequestError(f"policy error: {type(err).__name__}: {err}") from None
        expected = (self.spec.chunk_length, self.spec.action_dim)
        if result.actions.shape != expected:
            raise RequestError(f"policy error: actions of shape {result.actions.shape}, expected {expected}")
        if not np.isfinite(result.actions).all():
            raise RequestError("policy error: the policy produced non-finite actions")  # not for a robot
        timing = {"infer_ms": result.infer_ms, "queue_ms": result.queue_ms, "batch_size": result.batch_size}
        if previous_total_ms is not None:
            timing["prev_total_ms"] = previous_total_ms
        return packb({"actions": result.actions, "server_timing": timing})

    async def _control(self, session: Session, request: dict) -> bytes:
        command = request[CTRL_KEY]
        if command in ("reset", "episode_start"):
            await self.engine.call(self.runner.reset, session)
        elif command == "reseed":
            seed = request.get("seed")
            if type(seed) is not int or not -(2**63) <= seed < 2**64:
                raise RequestError(f"invalid control message: 'reseed' needs an int 'seed', not {seed!r:.40}")
            await self.engine.call(self.runner.reseed, session, seed)
        elif command == "metadata":
            return packb({ACK_KEY: command, "metadata": self.metadata})
        elif command != "episode_end":
            raise RequestError(f"invalid control message: unknown {CTRL_KEY} {command!r:.40}")
        return packb({ACK_KEY: command})
