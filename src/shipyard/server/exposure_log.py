"""Experiment exposures of a server process: every request an experiment assigned, queued in
memory and written to the event log (``EXPOSURES``) in batches by a background task.

As the prediction log: the request path appends one tuple to a list (no I/O, no lock, never a
wait); beyond ``queue_rows`` queued records an exposure is dropped and counted in
``shipyard_exposures_dropped_total{model,reason="queue_full"}``; a failed write is counted with
``reason="write_failed"``; shutdown writes everything queued before the event log closes. The
queue is flushed every ``flush_interval_s`` of the server's prediction-log settings, or sooner
at ``flush_rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shipyard.server.config import PredictionLogConfig
from shipyard.server.metrics import ServerMetrics
from shipyard.storage.events import EXPOSURES, EventLog
from shipyard.storage.events.kinds import TIME

logger = logging.getLogger(__name__)

_FIELDS = ("time", "experiment", "deployment", "variant", "version", "request_id", "unit_key")


class ExposureLog:
    """The bounded queue of exposures and its flusher. The event log is opened on the first
    write (``open_events``), so a server without experiments never opens it; ``owns_events``:
    close it at shutdown (else the prediction log, which shares it, does)."""

    def __init__(
        self,
        open_events: Callable[[], EventLog],
        config: PredictionLogConfig,
        metrics: ServerMetrics,
        *,
        owns_events: bool,
    ) -> None:
        self.events: EventLog | None = None
        self._open_events = open_events
        self._owns_events = owns_events
        self._config = config
        self._metrics = metrics
        self._pending: list[tuple[Any, ...]] = []
        self._writing = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Exposures accepted and not yet written."""
        return len(self._pending) + self._writing

    def log(
        self,
        experiment: str,
        deployment: str,
        variant: str,
        version: int | None,
        request_id: str,
        unit_key: str | None,
        status: int,
        latency_s: float,
        revision: int,
    ) -> None:
        """Queue one exposure (never blocks; a full queue drops and counts it)."""
        if self.queued >= self._config.queue_rows:
            self._metrics.exposures_dropped.labels(deployment, "queue_full").inc()
            return
        self._pending.append(
            (
                time.time(),
                experiment,
                deployment,
                variant,
                version,
                request_id,
                unit_key,
                status,
                latency_s * 1000.0,
                revision,
            )
        )
        if len(self._pending) >= self._config.flush_rows:
            self._wake.set()
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a bug here must not stop logging for the process's life
                logger.exception("exposure log flush failed")

    async def flush(self) -> int:
        """Write what is queued now; returns the exposures written."""
        async with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return 0
            self._writing = len(pending)
            try:
                return await asyncio.to_thread(self._write, pending)
            finally:
                self._writing = 0

    async def close(self) -> None:
        """Write everything queued and stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        while self._pending:
            await self.flush()
        if self._owns_events and self.events is not None:
            await asyncio.to_thread(self.events.close)

    def _write(self, pending: list[tuple[Any, ...]]) -> int:
        if self.events is None:
            try:
                self.events = self._open_events()
            except Exception as exc:
                for deployment in {record[2] for record in pending}:
                    lost = sum(record[2] == deployment for record in pending)
                    self._metrics.exposures_dropped.labels(deployment, "write_failed").inc(lost)
                logger.warning("exposure log: the event log did not open: %s", exc)
                return 0
        columns = list(zip(*pending, strict=True))
        micros = pa.array([int(t * 1e6) for t in columns[0]], pa.int64())
        table = pa.table(
            {
                "time": micros.cast(TIME),
                **{
                    name: pa.array(values)
                    for name, values in zip(_FIELDS[1:], columns[1:7], strict=True)
                },
                "status": pa.array(columns[7], pa.int32()),
                "latency_ms": pa.array(columns[8], pa.float64()),
                "revision": pa.array(columns[9], pa.int64()),
            }
        )
        written = 0
        for experiment in sorted(set(columns[1])):
            part = table.filter(pc.equal(table.column("experiment"), experiment))
            deployment = part.column("deployment")[0].as_py()
            try:
                self.events.append(EXPOSURES, part)
            except Exception as exc:
                self._metrics.exposures_dropped.labels(deployment, "write_failed").inc(
                    part.num_rows
                )
                logger.warning(
                    "exposure log: %d exposures of %s were not written: %s: %s",
                    part.num_rows,
                    experiment,
                    type(exc).__name__,
                    exc,
                )
                continue
            self._metrics.exposures_written.labels(deployment).inc(part.num_rows)
            written += part.num_rows
        return written
