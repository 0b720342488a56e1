"""The prediction log of a server process: served predictions queued in memory and written to
the event log in batches by a background task.

The request path only appends a tuple of references (the request's validated batch, the model's
answer, ids, timings) to a list: no copy, no conversion, no I/O, no lock, never a wait. The queue
holds at most ``queue_rows`` rows not yet written (those being written included); beyond it a
prediction is dropped and counted in ``shipyard_prediction_log_dropped_total{model,reason}``.
A task on the server's event loop takes the whole queue every ``flush_interval_s`` (sooner once
``flush_rows`` rows wait) and a worker thread turns it into Arrow tables (one per model version
and input layout: ``in_<column>``, ``out_output`` or ``out_output_<j>``) and appends them; a
failed write is logged and its rows counted as dropped (``reason="write_failed"``).

Each deployment's :class:`~shipyard.server.config.LogConfig` says which share of requests to log
(by a hash of the request id, so the same request is logged or not on every replica and for
every model it reaches), which input columns to leave out and which to log as
HMAC-SHA256(salt, value), the salt being the event log's (shared by every writer).

The request id is the ``X-Request-ID`` header, else the OIP body's ``id``, else a new one that is
answered in ``X-Request-ID`` (gRPC: ``x-request-id`` metadata, else the request's ``id``, else a
new one answered as the response's ``id``). The unit key is ``X-Shipyard-Unit``
(``x-shipyard-unit``).

Shutdown (the app's lifespan end, which SIGTERM reaches after the drain phase) writes everything
queued before the event log is closed; each worker process has its own queue and its own files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from shipyard.core.oip import MATRIX_INPUT, OUTPUT_NAME
from shipyard.core.signature import Batch
from shipyard.server.config import LogConfig, ServerConfig
from shipyard.server.endpoints import Prediction
from shipyard.server.metrics import ServerMetrics
from shipyard.storage.events import PREDICTIONS, EventLog, delete_older_than
from shipyard.storage.events.kinds import TIME

logger = logging.getLogger(__name__)

HeaderLookup = Callable[[str], str | None]
REQUEST_ID_HEADER = "X-Request-ID"
UNIT_HEADER = "x-shipyard-unit"
RETENTION_EVERY_S = 3600.0
_HASH_SPACE = float(2**64)


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged at ``rate``: a hash of its id, uniform in [0, 1), below it."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < rate


@dataclass(slots=True)
class _Policy:
    """One deployment's logging rules and counters."""

    name: str
    rate: float
    drop: frozenset[str]
    hash: frozenset[str]
    dropped_full: Any
    dropped_failed: Any
    written: Any

    @classmethod
    def of(cls, name: str, config: LogConfig, metrics: ServerMetrics) -> _Policy:
        dropped = metrics.prediction_log_dropped
        return cls(
            name,
            config.sample_rate,
            frozenset(config.drop),
            frozenset(config.hash),
            dropped.labels(name, "queue_full"),
            dropped.labels(name, "write_failed"),
            metrics.prediction_log_written.labels(name),
        )


class _Pending(NamedTuple):
    time_s: float
    policy: _Policy
    version: int | None
    variant: str | None
    request_id: str
    unit_key: str | None
    latency_ms: float
    batch: Batch
    output: np.ndarray[Any, Any]


class PredictionLog:
    """The bounded queue and its flusher. ``events`` None (or ``prediction_log.enabled``
    false) logs nothing; a deployment whose ``sample_rate`` is 0 logs nothing."""

    def __init__(
        self, events: EventLog | None, config: ServerConfig, metrics: ServerMetrics
    ) -> None:
        settings = config.prediction_log
        self.events = events
        self.config = settings
        self._metrics = metrics
        enabled = events is not None and settings.enabled
        self._policies = {
            d.name: _Policy.of(d.name, d.log, metrics)
            for d in config.deployments
            if enabled and d.log.sample_rate > 0.0
        }
        self._capacity = settings.queue_rows
        self._flush_rows = settings.flush_rows
        self._buffer: list[_Pending] = []
        self._buffered_rows = 0
        self._queued_rows = 0  # buffered + being written
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._salt: bytes | None = None
        self._next_retention = 0.0

    @property
    def queued_rows(self) -> int:
        """Rows accepted and not yet written (or dropped by a failed write)."""
        return self._queued_rows

    # ------------------------------------------------------------ request path
    def log_http(
        self,
        endpoint: str,
        batch: Batch,
        prediction: Prediction,
        header: HeaderLookup,
        body_id: Any,
        answer_headers: dict[str, str],
        started: float,
    ) -> None:
        """Queue a REST answer (v2 or v1); adds ``X-Request-ID`` to ``answer_headers`` when
        the request came without an id."""
        policy = self._policies.get(endpoint)
        if policy is None:
            return
        request_id = header("x-request-id") or (body_id if isinstance(body_id, str) else None)
        if not request_id:
            request_id = answer_headers[REQUEST_ID_HEADER] = secrets.token_hex(16)
        self._add(policy, batch, prediction, request_id, header(UNIT_HEADER), started)

    def log(
        self,
        endpoint: str,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        unit_key: str | None,
        started: float,
        variant: str | None = None,
    ) -> None:
        """Queue one answer whose ids the transport has resolved (gRPC)."""
        policy = self._policies.get(endpoint)
        if policy is not None:
            self._add(policy, batch, prediction, request_id, unit_key, started, variant)

    def logs(self, endpoint: str) -> bool:
        """Whether ``endpoint`` logs at all (transports skip resolving ids when not)."""
        return endpoint in self._policies

    def _add(
        self,
        policy: _Policy,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        unit_key: str | None,
        started: float,
        variant: str | None = None,
    ) -> None:
        if policy.rate < 1.0 and not sampled(request_id, policy.rate):
            return
        rows = batch.num_rows
        if self._queued_rows + rows > self._capacity:
            policy.dropped_full.inc(rows)
            return
        self._queued_rows += rows
        self._buffered_rows += rows
        now = time.time()
        self._buffer.append(
            _Pending(
                now,
                policy,
                prediction.version,
                variant,
                request_id,
                unit_key,
                (time.perf_counter() - started) * 1000.0,
                batch,
                prediction.output,
            )
        )
        if self._buffered_rows >= self._flush_rows:
            self._wake.set()

    # --------------------------------------------------------------- flushing
    def start(self) -> None:
        """Start the flusher on the running event loop (nothing to do when logging is off)."""
        if self._policies and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = self.config.flush_interval_s
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self.flush()
            await self._expire()

    async def flush(self) -> int:
        """Write everything queued now (in batches of at most ``flush_rows`` rows… per call of
        the storage: one per model version); returns the rows written."""
        written = 0
        while self._buffer:
            pending, self._buffer = self._buffer, []
            rows, self._buffered_rows = self._buffered_rows, 0
            try:
                written += await asyncio.to_thread(self._write, pending)
            finally:
                self._queued_rows -= rows
            if self._closing:
                continue  # drain everything at shutdown
            break  # the next round takes what arrived meanwhile
        return written

    async def close(self) -> None:
        """Stop the flusher after it has written everything queued, then close the log."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        while self._buffer:
            await self.flush()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)

    def _write(self, pending: list[_Pending]) -> int:
        """Convert and append (worker thread); a failure drops and counts the batch."""
        groups: dict[tuple[Any, ...], list[_Pending]] = {}
        for item in pending:
            groups.setdefault(_layout(item), []).append(item)
        written = 0
        for items in groups.values():
            policy = items[0].policy
            rows = sum(item.batch.num_rows for item in items)
            try:
                salt = self._salt_for(policy)
                assert self.events is not None
                self.events.append(PREDICTIONS, records_table(items, salt))
            except Exception as exc:
                policy.dropped_failed.inc(rows)
                self._metrics.prediction_log_flushes.labels("error").inc()
                logger.warning(
                    "prediction log: %d predictions of %s were not written: %s: %s",
                    rows,
                    policy.name,
                    type(exc).__name__,
                    exc,
                )
                continue
            policy.written.inc(rows)
            self._metrics.prediction_log_flushes.labels("ok").inc()
            written += rows
        return written

    def _salt_for(self, policy: _Policy) -> bytes:
        if not policy.hash:
            return b""
        if self._salt is None:
            assert self.events is not None
            self._salt = self.events.salt()
        return self._salt

    async def _expire(self) -> None:
        days = self.config.retention_days
        if days is None or self.events is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + RETENTION_EVERY_S
        try:
            deleted = await asyncio.to_thread(
                delete_older_than, self.events, PREDICTIONS, days=days, now=datetime.now(UTC)
            )
        except Exception as exc:
            logger.warning("prediction log retention failed: %s: %s", type(exc).__name__, exc)
            return
        if deleted:
            logger.info("prediction log: deleted %d records older than %g days", deleted, days)


# ------------------------------------------------------------------ records
def _layout(item: _Pending) -> tuple[Any, ...]:
    """What must match for queued answers to share one table."""
    batch = item.batch
    inputs = tuple(batch.columns) if batch.columns is not None else batch.values()[0].shape[1:]
    output = item.output
    return (item.policy.name, item.version, inputs, output.shape[1:], output.dtype.kind)


def records_table(items: list[_Pending], salt: bytes) -> pa.Table:
    """The prediction records of queued answers sharing one layout: one row per input row."""
    policy = items[0].policy
    counts = np.fromiter((item.batch.num_rows for item in items), np.int64, len(items))
    total = int(counts.sum())
    repeat = None if (counts == 1).all() else np.repeat(np.arange(len(items)), counts)

    def per_request(values: Iterable[Any], type_: pa.DataType) -> pa.Array:
        array = pa.array(list(values), type_)
        return array if repeat is None else array.take(repeat)

    if repeat is None:
        row = np.zeros(total, np.int32)
    else:
        row = (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)
    micros = np.fromiter((item.time_s for item in items), np.float64, len(items)) * 1e6
    columns: dict[str, Any] = {
        "time": per_request(micros.astype(np.int64), pa.int64()).cast(TIME),
        "model": pa.repeat(pa.scalar(policy.name, pa.string()), total),
        "version": pa.repeat(pa.scalar(items[0].version, pa.int64()), total),
        "variant": per_request((item.variant for item in items), pa.string()),
        "request_id": per_request((item.request_id for item in items), pa.string()),
        "row": pa.array(row),
        "unit_key": per_request((item.unit_key for item in items), pa.string()),
        "latency_ms": per_request((item.latency_ms for item in items), pa.float64()),
    }
    for name, values in _input_columns([item.batch for item in items]):
        if name in policy.drop:
            continue
        if name in policy.hash:
            columns[f"in_{name}"] = pa.array(_hashed(values, salt), pa.string())
        else:
            columns[f"in_{name}"] = _arrow(values)
    output = np.concatenate([np.asarray(item.output) for item in items])
    if output.ndim == 2:
        for j in range(output.shape[1]):
            columns[f"out_{OUTPUT_NAME}_{j}"] = _arrow(output[:, j])
    else:
        columns[f"out_{OUTPUT_NAME}"] = _arrow(output)
    return pa.table(columns)


def _input_columns(batches: list[Batch]) -> list[tuple[str, np.ndarray[Any, Any]]]:
    first = batches[0]
    if first.columns is None:  # a tensor input: one list column of each row's values
        tensor = np.concatenate([b.values()[0] for b in batches])
        return [(MATRIX_INPUT, tensor)]
    names = list(first.columns)
    if all(b.table is not None for b in batches):
        table = np.concatenate([b.table for b in batches])  # type: ignore[misc]
        return [(name, table[:, i]) for i, name in enumerate(names)]
    return [
        (name, np.concatenate([b.columns[name] for b in batches]))  # type: ignore[index]
        for name in names
    ]


def _arrow(values: np.ndarray[Any, Any]) -> pa.Array:
    """A column from a 1-D array, or a list column (one flattened list per row) from N-D."""
    if values.ndim <= 1:
        return pa.array(values, from_pandas=False)
    flat = np.ascontiguousarray(values).reshape(values.shape[0], -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


def _hashed(values: np.ndarray[Any, Any], salt: bytes) -> list[str | None]:
    return [
        None if value is None else hmac.new(salt, str(value).encode(), hashlib.sha256).hexdigest()
        for value in values.tolist()
    ]
