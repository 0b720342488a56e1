"""Dynamic batching: concurrent requests to one model merged into one call and split back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.core.signature import Batch


@dataclass(slots=True)
class _Pending:
    batch: Batch
    future: asyncio.Future[np.ndarray[Any, Any]]
    enqueued: float


class DynamicBatcher:
    """Collects requests for up to ``max_wait_ms`` or ``max_batch_size`` rows, runs ``predict``
    once in a worker thread, and answers each request with its own rows.

    ``on_batch(rows, queue_seconds)`` reports each run for metrics. The queue is bounded by
    the endpoint's in-flight limit. ``stop`` answers everything already queued first, so a
    version swap never strands a request.
    """

    def __init__(
        self,
        predict: Callable[[Batch], np.ndarray[Any, Any]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answer every queued request, then end the collecting task."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, batch: Batch) -> np.ndarray[Any, Any]:
        future: asyncio.Future[np.ndarray[Any, Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(batch, future, time.perf_counter()))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            group = [first]
            rows = first.batch.num_rows
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_batch_size:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = self._queue.get_nowait()
                group.append(item)
                rows += item.batch.num_rows
            try:
                await self._run_group(group, rows)
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _run_group(self, group: list[_Pending], rows: int) -> None:
        live = [p for p in group if not p.future.done()]  # timed-out callers are skipped
        if not live:
            return
        started = time.perf_counter()
        if self._on_batch is not None:
            self._on_batch(rows, started - min(p.enqueued for p in live))
        try:
            merged = Batch.concat([p.batch for p in live])
            output = await asyncio.to_thread(self._predict, merged)
        except Exception as exc:  # the model's failure goes to every caller in the group
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        offsets = np.cumsum([p.batch.num_rows for p in live])[:-1]
        for pending, part in zip(live, np.split(output, offsets), strict=True):
            if not pending.future.done():
                pending.future.set_result(part)
