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

``GET /healthz`` on the same port answers ``200 ok``. Requests of one connection are answered in order; each
connection keeps its own random state (``vlajepa.serve.runner``). The server binds to 127.0.0.1 unless told
otherwise: it has no authentication.
"""

from __future__ import annotations

import http
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, Server, ServerConnection, serve

from vlajepa.serve.codec import DecodeError, packb, unpackb
from vlajepa.serve.engine import InferenceEngine
from vlajepa.serve.observation import InputLimits, ObservationError, parse_observation
from vlajepa.serve.runner import PolicyRunner, Session
from vlajepa.serve.spec import ACK_KEY, CTRL_KEY, PolicySpec

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class ServerConfig:
    """How the server listens and what it accepts."""

    host: str = "127.0.0.1"  # loopback by default: the protocol has no authentication
    port: int = 8000  # 0 picks a free port (see PolicyServer.port)
    max_batch: int = 1  # >1 merges concurrent requests into one forward pass (not reproducible per session)
    batch_wait_s: float = 0.0  # extra wait for a batch to fill; 0 batches only requests already waiting
    max_message_bytes: int = 16 * 2**20  # larger frames close the connection (websocket code 1009)
    max_connections: int = 64  # further handshakes get HTTP 503
    limits: InputLimits = field(default_factory=InputLimits)


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
        self._connections = 0

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        assert self._server is not None, "the server is not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        if self.config.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("binding %s: the policy server has no authentication", self.config.host)
        await self.engine.start()
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            compression=None,
            max_size=self.config.max_message_bytes,
        )
        logger.info("serving %s on %s", self.spec.model.get("name", "policy"), self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.engine.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None, "call start() first"
        await self._server.serve_forever()

    async def __aenter__(self) -> PolicyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if self._connections >= self.config.max_connections:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        self._connections += 1
        session = self.runner.new_session()
        peer = websocket.remote_address
        logger.info("connection %d from %s opened", session.id, peer)
        try:
            await websocket.send(self._metadata_frame)
            previous_total_ms: float | None = None
            async for message in websocket:
                started = time.perf_counter()
                try:
                    reply: str | bytes = await self._respond(session, message, previous_total_ms)
                except RequestError as err:
                    logger.info("connection %d: %s", session.id, err)
                    reply = str(err)
                except Exception as err:  # noqa: BLE001 - one bad request must not end the connection
                    logger.exception("connection %d: internal error", session.id)
                    reply = f"internal error: {type(err).__name__}: {err}"
                await websocket.send(reply)
                previous_total_ms = (time.perf_counter() - started) * 1e3
        except websockets.ConnectionClosed:
            pass  # an abrupt disconnect ends this connection only
        finally:
            self._connections -= 1
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
