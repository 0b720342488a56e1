"""The prediction log of a server process: served predictions queued in memory and written to
the event log in batches by a background task.

The request path only appends references (the request's input matrix or batch, the model's
answer, ids, timings) to the deployment's queue, one flat list: no copy, no conversion, no I/O,
no lock, never a wait, and no new object that the garbage collector tracks when the input is one
matrix (the common numeric case; a list of one tuple per answer cost 4,000 instructions a request
in extra collections, measured with callgrind). The queue holds at most ``queue_rows`` rows not
yet written (those being written included); beyond it a prediction is dropped and counted in
``shipyard_prediction_log_dropped_total{model,reason}``.

A task on the server's event loop takes the whole queue every ``flush_interval_s`` (sooner once
``flush_rows`` rows wait) and a worker thread turns it into Arrow tables (one per deployment
version: ``in_<column>``, ``out_output`` or ``out_output_<j>``) and appends them; a failed write
is logged and its rows counted as dropped (``reason="write_failed"``).

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
import itertools
import logging
import operator
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import numpy as np
import pyarrow as pa

from shipyard.core.oip import MATRIX_INPUT, OUTPUT_NAME
from shipyard.core.signature import Batch
from shipyard.server.config import LogConfig, ServerConfig
from shipyard.server.endpoints import Prediction
from shipyard.server.metrics import ServerMetrics
from shipyard.server.routing import UNIT_HEADER, sampled
from shipyard.storage.events import PREDICTIONS, EventLog, delete_older_than
from shipyard.storage.events.kinds import TIME

logger = logging.getLogger(__name__)

HeaderLookup = Callable[[str], str | None]
REQUEST_ID_HEADER = "X-Request-ID"
RETENTION_EVERY_S = 3600.0

Array = np.ndarray[Any, Any]


_FIELDS = 9  # per queued answer: see _Policy.pending


class _Queue:
    """Queued answers of one deployment, a list per field. ``inputs`` holds each request's input
    matrix, or its Batch when it has no single matrix (columns of several types, a tensor)."""

    __slots__ = (
        "inputs",
        "nows",
        "outputs",
        "request_ids",
        "rows",
        "starts",
        "unit_keys",
        "variants",
        "versions",
    )

    def __init__(self, pending: list[Any]) -> None:
        self.starts: list[float] = pending[0::_FIELDS]
        self.nows: list[float] = pending[1::_FIELDS]
        self.versions: list[int | None] = pending[2::_FIELDS]
        self.variants: list[str | None] = pending[3::_FIELDS]
        self.request_ids: list[str] = pending[4::_FIELDS]
        self.unit_keys: list[str | None] = pending[5::_FIELDS]
        self.rows: list[int] = pending[6::_FIELDS]
        self.inputs: list[Any] = pending[7::_FIELDS]
        self.outputs: list[Array] = pending[8::_FIELDS]

    def take(self, indices: Sequence[int]) -> _Queue:
        """The answers at ``indices``, as a queue of their own."""
        part = _Queue([])
        for name in self.__slots__:
            values = getattr(self, name)
            setattr(part, name, [values[i] for i in indices])
        return part


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
    pending: list[Any] = field(default_factory=list)
    """Queued answers, flat: (started, answered, version, variant, request_id, unit_key, rows,
    inputs, output) each, appended with one ``extend`` of a tuple that is freed at once, so
    that queuing creates no object the garbage collector tracks (timestamps are
    ``perf_counter`` readings; wall-clock times are computed at flush)."""
    names: dict[int | None, tuple[str, ...]] = field(default_factory=dict)
    """Input column names of a matrix input, by version (its signature fixes them)."""

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
        self._queued_rows = 0  # in the queues + being written
        self._flush_at = self._flush_rows  # queued rows that wake the flusher
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time: the row counts stay right
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._salt: bytes | None = None
        self._id_prefix = f"{secrets.token_hex(8)}-"
        self._id_count = itertools.count()
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
        body_id: str | None,
        answer_headers: dict[str, str],
        started: float,
    ) -> None:
        """Queue a REST answer (v2 or v1): ``body_id`` is the OIP body's ``id`` (None for v1),
        ``started`` the request's ``perf_counter()`` at arrival. Adds ``X-Request-ID`` to
        ``answer_headers`` when the request came without an id."""
        policy = self._policies.get(endpoint)
        if policy is None:
            return
        request_id = header("x-request-id") or body_id
        if not request_id:
            request_id = answer_headers[REQUEST_ID_HEADER] = (
                f"{self._id_prefix}{next(self._id_count)}"
            )
        if policy.rate < 1.0 and not sampled(request_id, policy.rate):
            return
        self._queue(policy, batch, prediction, request_id, header(UNIT_HEADER), started, None)

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
        if policy is not None and (policy.rate >= 1.0 or sampled(request_id, policy.rate)):
            self._queue(policy, batch, prediction, request_id, unit_key, started, variant)

    def new_request_id(self) -> str:
        """A request id unique to this process's life: a random prefix and a counter
        (0.1 µs; a uuid4 takes 1.5)."""
        return f"{self._id_prefix}{next(self._id_count)}"

    def logs(self, endpoint: str) -> bool:
        """Whether ``endpoint`` logs at all (transports skip resolving ids when not)."""
        return endpoint in self._policies

    def _queue(
        self,
        policy: _Policy,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        unit_key: str | None,
        started: float,
        variant: str | None,
    ) -> None:
        rows = batch.num_rows
        queued = self._queued_rows + rows
        if queued > self._capacity:
            policy.dropped_full.inc(rows)
            return
        self._queued_rows = queued
        version = prediction.version
        inputs: Any = batch.table
        if inputs is None:
            inputs = batch  # columns of several types, or a tensor
        elif version not in policy.names:
            policy.names[version] = tuple(batch.columns or ())
        policy.pending.extend(
            (
                started,
                perf_counter(),
                version,
                variant,
                request_id,
                unit_key,
                rows,
                inputs,
                prediction.output,
            )
        )
        if queued >= self._flush_at:
            self._wake.set()

    # --------------------------------------------------------------- flushing
    def start(self) -> None:
        """Start the flusher on the running event loop (nothing to do when logging is off)."""
        if self._policies and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = self.config.flush_interval_s
        await self._expire()
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a bug here must not stop logging for the process's life
                logger.exception("prediction log flush failed")
            await self._expire()

    async def flush(self) -> int:
        """Write what is queued now (one append per deployment version), or, once closing,
        until the queue is empty; returns the rows written."""
        written = 0
        async with self._flushing:
            while self._queued_rows:
                pending = []
                for policy in self._policies.values():
                    if policy.pending:
                        pending.append((policy, policy.pending))
                        policy.pending = []
                rows = self._queued_rows
                self._flush_at = rows + self._flush_rows
                try:
                    written += await asyncio.to_thread(self._write, pending)
                finally:
                    self._queued_rows -= rows
                    self._flush_at = self._flush_rows
                if not self._closing:
                    break  # the next round takes what arrived meanwhile
        return written

    async def close(self) -> None:
        """Stop the flusher after it has written everything queued, then close the log."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        while self._queued_rows:
            await self.flush()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)

    def _write(self, pending: list[tuple[_Policy, list[Any]]]) -> int:
        """Convert and append (worker thread); a failure drops and counts the batch."""
        written = 0
        for policy, flat in pending:
            queue = _Queue(flat)
            rows = sum(queue.rows)
            try:
                salt = self._salt_for(policy)
                assert self.events is not None
                for table in _tables(queue, policy, salt):
                    self.events.append(PREDICTIONS, table)
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
def _tables(queue: _Queue, policy: _Policy, salt: bytes) -> list[pa.Table]:
    """One table per version served (usually one), or per shape when shapes differ within a
    version (tensors or outputs with variable dimensions)."""
    if len(set(queue.versions)) > 1:
        by_version: dict[int | None, list[int]] = {}
        for index, version in enumerate(queue.versions):
            by_version.setdefault(version, []).append(index)
        return [t for rows in by_version.values() for t in _tables(queue.take(rows), policy, salt)]
    try:
        return [records_table(queue, policy, salt)]
    except ValueError:
        by_shape: dict[tuple[Any, ...], list[int]] = {}
        for index, (inputs, output) in enumerate(zip(queue.inputs, queue.outputs, strict=True)):
            shape = inputs.shape[1:] if type(inputs) is np.ndarray else _batch_shape(inputs)
            by_shape.setdefault((shape, output.shape[1:], output.dtype.kind), []).append(index)
        if len(by_shape) == 1:
            raise
        return [records_table(queue.take(rows), policy, salt) for rows in by_shape.values()]


def _batch_shape(batch: Batch) -> tuple[Any, ...]:
    return tuple(batch.columns) if batch.columns is not None else batch.values()[0].shape[1:]


def records_table(queue: _Queue, policy: _Policy, salt: bytes) -> pa.Table:
    """The prediction records of queued answers of one deployment version: one record per input
    row, in queue order."""
    counts = np.asarray(queue.rows, np.int64)
    total = int(counts.sum())
    repeat = None if total == len(counts) else np.repeat(np.arange(len(counts)), counts)

    def per_request(values: Any, type_: pa.DataType) -> pa.Array:
        if type(values) is list and values.count(None) == len(values):
            return pa.nulls(total, type_)  # no variants, no unit keys: the usual case
        array = pa.array(values, type_)
        return array if repeat is None else array.take(repeat)

    if repeat is None:
        index = np.zeros(total, np.int32)
    else:
        index = (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)
    answered = np.asarray(queue.nows, np.float64)
    offset = time.time() - perf_counter()  # wall clock = perf_counter + offset (now)
    micros = ((answered + offset) * 1e6).astype(np.int64)
    latency_ms = (answered - np.asarray(queue.starts, np.float64)) * 1000.0
    version = queue.versions[0]
    columns: dict[str, Any] = {
        "time": per_request(micros, pa.int64()).cast(TIME),
        "model": pa.repeat(pa.scalar(policy.name, pa.string()), total),
        "version": pa.repeat(pa.scalar(version, pa.int64()), total),
        "variant": per_request(queue.variants, pa.string()),
        "request_id": per_request(queue.request_ids, pa.string()),
        "row": pa.array(index),
        "unit_key": per_request(queue.unit_keys, pa.string()),
        "latency_ms": per_request(latency_ms, pa.float64()),
    }
    for name, values in _input_columns(queue.inputs, policy.names.get(version, ())):
        if name in policy.drop:
            continue
        if name in policy.hash:
            columns[f"in_{name}"] = pa.array(_hashed(values, salt), pa.string())
        else:
            columns[f"in_{name}"] = _arrow(values)
    output = _stacked(queue.outputs)
    if output.ndim == 2:
        for j in range(output.shape[1]):
            columns[f"out_{OUTPUT_NAME}_{j}"] = _arrow(output[:, j])
    else:
        columns[f"out_{OUTPUT_NAME}"] = _arrow(output)
    return pa.table(columns)


def _input_columns(inputs: list[Any], names: tuple[str, ...]) -> list[tuple[str, Array]]:
    """Each input column over the queued rows: from the requests' matrices (joined once), else
    from their batches (column by column, or one tensor)."""
    if set(map(type, inputs)) == {np.ndarray}:
        table = _stacked(inputs)
        if table.ndim == 2 and table.dtype.kind in "biuf":
            return list(zip(names, _transposed(table), strict=False))
        return [(name, table[:, i]) for i, name in enumerate(names)]
    batches = [Batch.from_table(names, x) if type(x) is np.ndarray else x for x in inputs]
    if batches[0].columns is None:  # a tensor input: one list column of each row's values
        return [(MATRIX_INPUT, np.concatenate([b.values()[0] for b in batches]))]
    columns = [b.columns for b in batches if b.columns is not None]
    return [(name, np.concatenate([c[name] for c in columns])) for name in columns[0]]


def _stacked(arrays: list[Array]) -> Array:
    """The rows of many arrays as one: their bytes joined when they share a dtype other than
    object, are contiguous and have the same row shape (measured on 100,000 one-row arrays:
    16 ms against 41 for ``np.concatenate``, whose per-array checks dominate), else
    concatenated."""
    first = arrays[0]
    shapes = {*map(_shape_of, arrays)}
    if (
        len({*map(_dtype_of, arrays)}) == 1
        and not first.dtype.hasobject
        and len({shape[1:] for shape in shapes}) == 1
        and first.ndim >= 1
    ):
        try:
            joined = b"".join(arrays)  # type: ignore[arg-type]  # contiguous ones are buffers
        except (BufferError, TypeError, ValueError):
            pass
        else:
            rows = sum(map(len, arrays))
            return np.frombuffer(joined, first.dtype).reshape((rows, *first.shape[1:]))
    return np.concatenate(arrays)


_dtype_of = operator.attrgetter("dtype")
_shape_of = operator.attrgetter("shape")


def _transposed(table: Array, block: int = 2048) -> Array:
    """A contiguous copy of ``table.T`` (whose rows Arrow then takes without a copy), made in
    blocks of rows that stay in cache: 7 ms for 100,000 × 30 doubles, against 14 for one
    ``np.ascontiguousarray`` and 20-25 for converting the 30 strided columns."""
    out = np.empty(table.shape[::-1], table.dtype)
    for start in range(0, table.shape[0], block):
        out[:, start : start + block] = table[start : start + block].T
    return out


def _arrow(values: Array) -> pa.Array:
    """A column from a 1-D array, or a list column (one flattened list per row) from N-D."""
    if values.ndim <= 1:
        return pa.array(values, from_pandas=False)
    flat = np.ascontiguousarray(values).reshape(values.shape[0], -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


def _hashed(values: Array, salt: bytes) -> list[str | None]:
    return [
        None if value is None else hmac.new(salt, str(value).encode(), hashlib.sha256).hexdigest()
        for value in values.tolist()
    ]
