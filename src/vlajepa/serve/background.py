"""Run a :class:`PolicyServer` on its own event loop in a background thread.

Tests, benchmarks and notebooks want a server next to synchronous client code in one process; this starts one,
waits until it listens (so its port is known even with ``port=0``) and stops it cleanly on exit.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from vlajepa.serve.server import PolicyServer, ServerConfig
from vlajepa.serve.spec import PolicySpec


class ServerThread:
    """``with ServerThread(policy, spec, config) as server: Client(server.url) ...``"""

    def __init__(
        self, policy: Any, spec: PolicySpec, config: ServerConfig | None = None, start_timeout_s: float = 30.0
    ) -> None:
        self.server = PolicyServer(policy, spec, config or ServerConfig(port=0))
        self.start_timeout_s = start_timeout_s
        self._thread = threading.Thread(target=self._run, name="vlajepa-server", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise TimeoutError(f"the policy server did not start within {self.start_timeout_s} s")
        if self._error is not None:
            raise RuntimeError("the policy server failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30.0)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as err:
            self._error = err
            await self.server.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()
