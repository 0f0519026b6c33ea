"""Queue inference requests from all connections onto one thread, optionally merging them into batches.

The event loop must never block on a forward pass (it also answers health checks, pings and other clients),
and the policy must run on exactly one thread (see ``vlajepa.serve.runner``), so every policy call goes
through a single-worker executor. Requests wait in a queue; when the policy supports
``predict_action_chunk_batch`` and ``max_batch > 1``, the worker takes everything already waiting (up to
``max_batch``) as one batch — requests that pile up during a forward pass ride together in the next one,
without delaying a lone client. ``batch_wait_s`` optionally waits a little longer for stragglers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from vlajepa.serve.runner import PolicyRunner, Session

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class InferenceResult:
    """One request's action chunk and where its time went."""

    actions: np.ndarray  # [H, D] float32
    queue_ms: float  # waiting for the inference thread
    infer_ms: float  # the forward pass (shared by the whole batch)
    batch_size: int


@dataclass
class _Job:
    session: Session
    observation: dict[str, Any]
    future: asyncio.Future
    enqueued: float


class InferenceEngine:
    """Serializes policy calls onto one thread; batches concurrent requests when the policy allows it."""

    def __init__(self, runner: PolicyRunner, max_batch: int = 1, batch_wait_s: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.runner = runner
        self.max_batch = max_batch if runner.supports_batch else 1
        self.batch_wait_s = batch_wait_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlajepa-infer")
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name="vlajepa-inference")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the inference thread (for control operations such as reset and reseed)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def infer(self, session: Session, observation: dict[str, Any]) -> InferenceResult:
        """Queue one observation and wait for its action chunk."""
        assert self._queue is not None, "InferenceEngine.start() was not awaited"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(session, observation, future, time.perf_counter()))
        return await future

    async def _next_batch(self) -> list[_Job]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        deadline = time.perf_counter() + self.batch_wait_s
        while len(jobs) < self.max_batch:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        # A client that disconnected while waiting no longer needs its answer.
        return [job for job in jobs if not job.future.done()]

    async def _work(self) -> None:
        while True:
            jobs = await self._next_batch()
            if jobs:
                await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            chunks = await self.call(
                self.runner.predict_batch, [job.session for job in jobs], [job.observation for job in jobs]
            )
        except Exception as err:  # noqa: BLE001 - a failing forward pass must not stop the server
            logger.exception("policy call failed for %d request(s)", len(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        infer_ms = (time.perf_counter() - started) * 1e3
        for job, actions in zip(jobs, chunks, strict=True):
            if not job.future.done():
                queue_ms = (started - job.enqueued) * 1e3
                job.future.set_result(InferenceResult(actions, queue_ms, infer_ms, len(jobs)))
