"""Prometheus metrics of the model server (names and labels per docs/ops-conventions.md).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``shipyard serve`` and
``/metrics`` aggregates every worker's values through ``MultiProcessCollector``.

The per-request metrics are kept cheap (measured in benchmarks/serving/inprocess.py): request
counts and latencies go straight to the values behind the metric children
(:func:`counter_value`, :class:`FastHistogram`: what ``inc``/``observe`` do, without their
per-call checks; with several workers each write still lands in the shared files before the
answer is sent), and the in-flight gauge is counted in Python and written once per event-loop
iteration (:class:`InFlight`).
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    multiprocess,
)

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """Every metric the server exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "shipyard_requests_total",
            "Inference requests answered, by model, version, protocol and status code.",
            ["model", "version", "protocol", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "shipyard_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "shipyard_inference_duration_seconds",
            "Time spent in the model call (one batch).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_duration = Histogram(
            "shipyard_queue_duration_seconds",
            "Time a request waited in the dynamic batcher's queue.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "shipyard_batch_size_rows",
            "Rows per model call after dynamic batching.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "shipyard_in_flight_requests",
            "Inference requests being processed.",
            ["model"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "shipyard_shed_requests_total",
            "Requests refused because the model's queue was full.",
            ["model"],
            registry=registry,
        )
        self.model_load = Histogram(
            "shipyard_model_load_seconds",
            "Time to load and warm up a model version.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_loads = Counter(
            "shipyard_model_loads_total",
            "Model version loads, by outcome (ok or error).",
            ["model", "outcome"],
            registry=registry,
        )
        self.violations = Counter(
            "shipyard_validation_violations_total",
            "Request values that broke an expectation of the model's reference profile.",
            ["model", "column", "expectation"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "shipyard_fallback_responses_total",
            "Answers given by the fallback, by why the primary did not answer.",
            ["model", "reason"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "shipyard_circuit_breaker_state",
            "Circuit breaker of the served version: 0 closed, 1 half-open, 2 open.",
            ["model"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.cache = Counter(
            "shipyard_response_cache_requests_total",
            "Response cache lookups, by result (hit or miss).",
            ["model", "result"],
            registry=registry,
        )
        self.prediction_log_written = Counter(
            "shipyard_prediction_log_written_total",
            "Predictions (rows) written to the prediction log.",
            ["model"],
            registry=registry,
        )
        self.prediction_log_dropped = Counter(
            "shipyard_prediction_log_dropped_total",
            "Predictions (rows) not logged: the log's queue was full or the write failed.",
            ["model", "reason"],
            registry=registry,
        )
        self.prediction_log_flushes = Counter(
            "shipyard_prediction_log_flushes_total",
            "Batches appended to the prediction log, by outcome (ok or error).",
            ["outcome"],
            registry=registry,
        )
        self.exposures_written = Counter(
            "shipyard_exposures_written_total",
            "Experiment exposures written to the event log.",
            ["model"],
            registry=registry,
        )
        self.exposures_dropped = Counter(
            "shipyard_exposures_dropped_total",
            "Experiment exposures not logged: the queue was full or the write failed.",
            ["model", "reason"],
            registry=registry,
        )
        self.variant_requests = Counter(
            "shipyard_variant_requests_total",
            "Requests answered per deployment variant (at most 16 variants a deployment).",
            ["model", "variant"],
            registry=registry,
        )
        self.shadow_requests = Counter(
            "shipyard_shadow_requests_total",
            "Requests mirrored to shadow variants, by outcome (ok, error, dropped: too many "
            "mirrored requests in flight).",
            ["model", "variant", "outcome"],
            registry=registry,
        )
        self.rollout_decisions = Counter(
            "shipyard_rollout_decisions_total",
            "Decisions of the rollout controller (step, promote, rollback, hold, allocate).",
            ["model", "action"],
            registry=registry,
        )
        # Request counters by (model, version, protocol, code as given), latencies by (model,
        # protocol), in-flight counts by model: children looked up once.
        self._children: dict[tuple[str, str, str, int | str], Any] = {}
        self._durations: dict[tuple[str, str], FastHistogram] = {}
        self._in_flight: dict[str, InFlight] = {}
        self._unshown: set[InFlight] = set()  # in-flight counts changed since last shown
        self._show_scheduled: asyncio.AbstractEventLoop | None = None  # the loop to show them

    def finish(
        self, model: str, version: str, protocol: str, code: int | str, seconds: float
    ) -> None:
        """Count one answered request (HTTP status or gRPC code name) and observe its latency."""
        key = (model, version, protocol, code)
        counter = self._children.get(key)
        if counter is None:
            child = self.requests.labels(model, version, protocol, str(code))
            counter = self._children[key] = counter_value(child)
        counter.inc(1)
        duration = self._durations.get((model, protocol))
        if duration is None:
            histogram = self.request_duration.labels(model, protocol)
            duration = self._durations[(model, protocol)] = FastHistogram(histogram)
        duration.observe(seconds)

    def in_flight_of(self, model: str) -> InFlight:
        """The in-flight count of ``model`` (one per model, shared by REST and gRPC)."""
        found = self._in_flight.get(model)
        if found is None:
            found = self._in_flight[model] = InFlight(self, self.in_flight.labels(model))
        return found

    def in_flight_changed(self, count: InFlight) -> None:
        """Set the gauge of ``count`` at the end of this event-loop iteration (at once when
        there is no running loop)."""
        self._unshown.add(count)
        scheduled = self._show_scheduled
        if scheduled is not None and not scheduled.is_closed():  # (a closed one never will)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.show_in_flight()
            return
        self._show_scheduled = loop
        loop.call_soon(self.show_in_flight)

    def show_in_flight(self) -> None:
        """Write every changed in-flight count to its gauge (a request that came and went in
        between writes nothing)."""
        self._show_scheduled = None
        unshown, self._unshown = self._unshown, set()
        for count in unshown:
            count.show()

    def expose(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type, negotiated from the Accept header."""
        self.show_in_flight()
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(registry), content_type


# ``Counter.inc`` and ``Histogram.observe`` check on every call that they are used on a child
# and that amounts are valid, then update the value objects behind the child. The request path
# calls them on children it made itself with amounts that are valid by construction, so these
# update the same value objects directly (``_value``, ``_sum``, ``_buckets`` and
# ``_upper_bounds`` of prometheus_client's metric classes; tests/test_server_hot_path.py checks
# that they expose what ``observe`` would).


def counter_value(child: Counter) -> Any:
    """The value object of a counter child: ``.inc(amount)`` without the checks."""
    return child._value


class FastHistogram:
    """``observe(seconds)`` of a histogram child, without the checks."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._bounds: list[float] = child._upper_bounds
        self._buckets: list[Any] = child._buckets
        self._sum: Any = child._sum

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        # The first bucket whose bound is >= amount, as Histogram.observe finds it.
        self._buckets[bisect_left(self._bounds, amount)].inc(1)


class InFlight:
    """Requests of one model in progress: counted here, written to the gauge at the end of the
    event-loop iteration in which the count changed, and before every scrape.

    A request answered without yielding to the event loop (an inline model with its body
    already received) leaves the count as it found it by the time the gauge would be written,
    so it writes nothing: no scrape in this process could have run in between, and for another
    worker's scrape it is as if it had read the file just before or after the request.
    """

    __slots__ = ("_gauge", "_metrics", "_shown", "count")

    def __init__(self, metrics: ServerMetrics, gauge: Gauge) -> None:
        self._metrics = metrics
        self._gauge = gauge
        self.count = 0
        self._shown = 0

    def enter(self) -> None:
        self.count += 1
        self._metrics.in_flight_changed(self)

    def leave(self) -> None:
        self.count -= 1
        self._metrics.in_flight_changed(self)

    def show(self) -> None:
        if self.count != self._shown:
            self._gauge.set(self.count)
            self._shown = self.count
