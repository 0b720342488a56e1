"""Prometheus metrics of the model server (names and labels per docs/ops-conventions.md).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``shipyard serve`` and
``/metrics`` aggregates every worker's values through ``MultiProcessCollector``.
"""

from __future__ import annotations

import os
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
        self._children: dict[tuple[str, ...], Any] = {}  # request counters by label values
        self._durations: dict[tuple[str, str], Any] = {}

    def finish(
        self, model: str, version: str, protocol: str, code: int | str, seconds: float
    ) -> None:
        """Count one answered request (HTTP status or gRPC code name) and observe its latency."""
        key = (model, version, protocol, str(code))
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self.requests.labels(*key)
        counter.inc()
        duration = self._durations.get((model, protocol))
        if duration is None:
            duration = self._durations[(model, protocol)] = self.request_duration.labels(
                model, protocol
            )
        duration.observe(seconds)

    def expose(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type, negotiated from the Accept header."""
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(registry), content_type
