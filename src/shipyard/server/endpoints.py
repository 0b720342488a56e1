"""Served endpoints: the model version behind each deployment, how it runs, and how it is swapped.

An :class:`Endpoint` holds one :class:`ModelRunner` at a time; requests read ``endpoint.runner``
once, so an alias move swaps the runner atomically between requests: in-flight requests finish
on the version they started with, later ones use the new one, none fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipyard.core.breaker import BreakerState, CircuitBreaker
from shipyard.core.identifiers import parse_model_uri
from shipyard.core.oip import TensorMetadata, input_metadata, output_metadata
from shipyard.core.profile import Profile
from shipyard.core.signature import Batch
from shipyard.core.validation import Validator
from shipyard.errors import (
    CircuitOpen,
    InferenceFailed,
    InferenceTimeout,
    InvalidInput,
    ModelNotReady,
    NotFound,
    Overloaded,
    ShipyardError,
)
from shipyard.experiments.spec import variants_of
from shipyard.experiments.store import DeploymentState
from shipyard.flavors.base import LoadedModel
from shipyard.server.batching import DynamicBatcher
from shipyard.server.cache import ResponseCache, batch_key
from shipyard.server.config import DeploymentConfig
from shipyard.server.features import FeatureInputs
from shipyard.server.metrics import FastHistogram, ServerMetrics
from shipyard.server.routing import Routing
from shipyard.workspace import Workspace

logger = logging.getLogger(__name__)

# Flavors whose model calls take microseconds: run on the event loop, no thread hop.
INLINE_FLAVORS = frozenset({"onnx", "lightgbm", "xgboost"})


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 3x
class Prediction:
    """A model's answer; ``fallback`` says why the fallback gave it instead (None: primary)."""

    output: np.ndarray[Any, Any]
    version: int | None
    fallback: str | None = None


_BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class ModelRunner:
    """One loaded model version and the way its predictions are executed."""

    def __init__(
        self,
        endpoint: str,
        model: LoadedModel,
        config: DeploymentConfig,
        metrics: ServerMetrics,
        profile: Profile | None = None,
    ) -> None:
        self.model = model
        self.validator = None
        if profile is not None and config.validation != "off" and model.signature.is_columnar:
            inputs = set(model.signature.column_names)
            profiled = tuple(c for c in profile.columns if c.name in inputs)
            self.validator = Validator(dataclasses.replace(profile, columns=profiled))
        self.version = model.version
        self.version_label = str(model.version)
        self.inputs: list[TensorMetadata] = input_metadata(model.signature)
        self.outputs: list[TensorMetadata] = output_metadata(model.signature)
        self.output_names = tuple(t.name for t in self.outputs)
        self.platform = f"shipyard_{model.flavor.name}"
        self.breaker = CircuitBreaker(
            window=config.breaker.window,
            min_calls=min(config.breaker.min_calls, config.breaker.window),
            failure_rate=config.breaker.failure_rate,
            open_s=config.breaker.open_s,
            probes=config.breaker.probes,
        )
        self.inline = config.batching is None and model.flavor.name in INLINE_FLAVORS
        self._inference = FastHistogram(metrics.inference_duration.labels(endpoint))
        self.cache = ResponseCache(config.cache_size) if config.cache_size else None
        self._cache_hits = metrics.cache.labels(endpoint, "hit")
        self._cache_misses = metrics.cache.labels(endpoint, "miss")
        self._batcher: DynamicBatcher | None = None
        if config.batching is not None:
            batch_size = metrics.batch_size.labels(endpoint)
            queue = metrics.queue_duration.labels(endpoint)

            def on_batch(rows: int, waited_s: float) -> None:
                batch_size.observe(rows)
                queue.observe(waited_s)

            self._batcher = DynamicBatcher(
                self._call,
                max_batch_size=config.batching.max_batch_size,
                max_wait_ms=config.batching.max_wait_ms,
                on_batch=on_batch,
            )

    def _call(self, batch: Batch) -> np.ndarray[Any, Any]:
        started = time.perf_counter()
        output = self.model.flavor.predict(self.model.model, batch)
        self._inference.observe(time.perf_counter() - started)
        return output

    def start(self) -> None:
        if self._batcher is not None:
            self._batcher.start()

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()

    def predict_inline(self, batch: Batch) -> np.ndarray[Any, Any]:
        """Predict on the event loop (``inline`` runners: microsecond models, no thread hop)."""
        if self.cache is None:
            return self._call(batch)
        key, cached = self._from_cache(batch)
        if cached is not None:
            return cached
        output = self._call(batch)
        self._to_cache(key, output)
        return output

    async def predict(self, batch: Batch) -> np.ndarray[Any, Any]:
        key, cached = self._from_cache(batch)
        if cached is not None:
            return cached
        if self._batcher is not None:
            output = await self._batcher.submit(batch)
        else:
            output = await asyncio.to_thread(self._call, batch)
        self._to_cache(key, output)
        return output

    def _from_cache(self, batch: Batch) -> tuple[bytes, np.ndarray[Any, Any] | None]:
        if self.cache is None:
            return b"", None
        key = batch_key(batch)
        cached = self.cache.get(key)
        (self._cache_hits if cached is not None else self._cache_misses).inc()
        return key, cached

    def _to_cache(self, key: bytes, output: np.ndarray[Any, Any]) -> None:
        if self.cache is not None:
            self.cache.put(key, output)


class Endpoint:
    """A deployment: its configuration, the runner serving it, and its fallback."""

    def __init__(self, config: DeploymentConfig, metrics: ServerMetrics) -> None:
        self.config = config
        self.name = config.name
        # Read on every request: plain attributes (a pydantic model's cost several times more).
        self.allow_nan = config.allow_nan
        self.allow_inf = config.allow_inf
        self._max_batch_rows = config.max_batch_rows
        self._max_queue = config.max_queue
        self._model_name = parse_model_uri(config.model).name
        self.metrics = metrics
        self.runner: ModelRunner | None = None
        self.fallback_runner: ModelRunner | None = None
        self.load_error: str | None = None
        self.feature_inputs: FeatureInputs | None = None  # set when the deployment names features
        self._constant = (
            None
            if config.fallback is None or config.fallback.constant is None
            else np.asarray(config.fallback.constant, dtype=np.float64)
        )
        self._in_flight = 0
        self._breaker_gauge = metrics.breaker_state.labels(self.name)
        self._breaker_shown: int | None = None  # last value set on the gauge
        self.in_flight_requests = metrics.in_flight_of(self.name)  # REST and gRPC, all stages
        self._swap_lock = asyncio.Lock()
        self.routing: Routing | None = None  # a strategy set in the metadata DB, if any

    @property
    def ready(self) -> bool:
        return self.runner is not None

    def require_runner(self, version: str | None = None) -> ModelRunner:
        """The runner serving now: ModelNotReady if none, NotFound if ``version`` is another."""
        runner = self.runner
        if runner is None:
            reason = f": {self.load_error}" if self.load_error else " (loading)"
            raise ModelNotReady(f"model {self.name!r} is not ready{reason}")
        if version is not None and version != runner.version_label:
            raise NotFound(
                f"model {self.name!r} has no version {version} served here; "
                f"it serves version {runner.version_label}"
            )
        return runner

    def check_inputs(self, batch: Batch, version: str | None = None) -> None:
        """Validate a request against the served version's reference profile: 400 naming the
        field (``validation: reject``) or count every violated expectation (``count``)."""
        runner = self.runner
        if runner is None or runner.validator is None or batch.columns is None:
            return
        violations = runner.validator.check(batch.columns)
        if not violations:
            return
        if self.config.validation == "reject":
            first = violations[0]
            raise InvalidInput(first.message, field=first.column)
        for violation in violations:
            self.metrics.violations.labels(self.name, violation.column, violation.code).inc()

    async def predict(
        self, batch: Batch, version: str | None = None, runner: ModelRunner | None = None
    ) -> Prediction:
        """Answer from ``runner`` (a routed variant's) or the served version, or from the
        fallback while it fails or its breaker is open. Sheds (503) beyond ``max_queue``
        concurrent requests."""
        if runner is None:
            runner = self.require_runner(version)
        if batch.num_rows > self._max_batch_rows:
            raise InvalidInput(
                f"request has {batch.num_rows} rows; the limit is {self._max_batch_rows}",
                field="inputs",
            )
        breaker = runner.breaker
        if not breaker.allow(time.monotonic()):
            self._show_breaker(breaker.state(time.monotonic()))
            return await self._fallback(batch, "open", self._circuit_open(runner))
        if self._in_flight >= self._max_queue:
            raise Overloaded(
                f"model {self.name!r} has {self._in_flight} requests in progress (limit "
                f"{self._max_queue}); retry shortly"
            )
        self._in_flight += 1
        failure: ShipyardError
        reason: str
        try:
            if runner.inline:  # cannot be interrupted anyway; no task, no timer
                output = runner.predict_inline(batch)
            else:
                output = await asyncio.wait_for(runner.predict(batch), self.config.timeout_s)
        except TimeoutError:
            failure = InferenceTimeout(
                f"model {self.name!r} did not answer within {self.config.timeout_s:g} s"
            )
            reason = "timeout"
        except ShipyardError:
            raise
        except Exception as exc:
            message = " ".join(str(exc).split())
            failure = InferenceFailed(
                f"model {self.name!r} version {runner.version} failed: "
                f"{type(exc).__name__}: {message}"
            )
            reason = "error"
        else:
            now = time.monotonic()
            breaker.record(failed=False, now=now)
            state = breaker.state(now)
            if _BREAKER_GAUGE[state] != self._breaker_shown:
                self._show_breaker(state)
            return Prediction(output, runner.version)
        finally:
            self._in_flight -= 1
        breaker.record(failed=True, now=time.monotonic())
        self._show_breaker(breaker.state(time.monotonic()))
        return await self._fallback(batch, reason, failure)

    def _show_breaker(self, state: BreakerState) -> None:
        """Set the breaker gauge when its value changes (the gauge holds the last value set)."""
        value = _BREAKER_GAUGE[state]
        if value != self._breaker_shown:
            self._breaker_gauge.set(value)
            self._breaker_shown = value

    def _circuit_open(self, runner: ModelRunner) -> CircuitOpen:
        wait = runner.breaker.retry_after(time.monotonic())
        return CircuitOpen(
            f"model {self.name!r} version {runner.version} keeps failing: its circuit breaker "
            f"is open for {wait:.1f} s more and no fallback is configured",
            retry_after_s=wait,
        )

    async def _fallback(self, batch: Batch, reason: str, failure: ShipyardError) -> Prediction:
        """The fallback's answer, or ``failure`` raised when there is none (or it fails too)."""
        if self._constant is not None:
            output = np.tile(self._constant, (batch.num_rows, 1))
            if self._constant.size == 1:
                output = output.reshape(batch.num_rows)
            self.metrics.fallbacks.labels(self.name, reason).inc()
            return Prediction(output, None, "constant")
        fallback = self.fallback_runner
        if fallback is None:
            raise failure
        try:
            output = await asyncio.wait_for(fallback.predict(batch), self.config.timeout_s)
        except Exception as exc:
            raise failure from exc
        self.metrics.fallbacks.labels(self.name, reason).inc()
        return Prediction(output, fallback.version, "model")

    async def refresh(self, workspace: Workspace) -> bool:
        """Load the version the deployment's URI names now, if it is not the one served (and the
        fallback model, if any, once).

        Returns True when a new version was swapped in. A failed load keeps the previous
        version serving and records why in ``load_error``.
        """
        async with self._swap_lock:
            if self.config.fallback is not None and self.config.fallback.model is not None:
                await self._load_fallback(workspace, self.config.fallback.model)
            try:
                number = await asyncio.to_thread(
                    workspace.registry.resolve_number, self.config.model
                )
                if self.runner is not None and self.runner.version == number:
                    return False
                started = time.perf_counter()
                model, profile = await asyncio.to_thread(
                    _load_and_warm_up, workspace, self._model_name, number
                )
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                self.metrics.model_loads.labels(self.name, "error").inc()
                logger.warning(
                    "deployment %s: loading %s failed, %s: %s",
                    self.name,
                    self.config.model,
                    "keeping the previous version" if self.runner else "not serving",
                    self.load_error,
                )
                return False
            self.metrics.model_load.labels(self.name).observe(time.perf_counter() - started)
            self.metrics.model_loads.labels(self.name, "ok").inc()
            runner = ModelRunner(self.name, model, self.config, self.metrics, profile)
            runner.start()
            previous, self.runner, self.load_error = self.runner, runner, None
            self._show_breaker(BreakerState.CLOSED)
            logger.info(
                "deployment %s now serves %s (was %s)",
                self.name,
                model.uri,
                previous.model.uri if previous else "nothing",
            )
        routing = self.routing
        if previous is not None and (routing is None or previous not in routing.runners.values()):
            await previous.stop()  # (a runner a strategy's variant shares keeps running)
        return True

    async def apply(self, state: DeploymentState | None, workspace: Workspace) -> bool:
        """Serve the deployment's strategy (None: its configured model alone): resolve every
        variant's URI, load the versions not loaded yet, then swap the new routing in at once.
        Returns True when the routing changed. A failed load keeps the current routing."""
        async with self._swap_lock:
            current = self.routing
            if state is None:
                if current is None:
                    return False
                self.routing = None
                await self._stop_unused(current, None)
                logger.info(
                    "deployment %s: strategy removed, serving %s", self.name, self.config.model
                )
                return True
            variants = variants_of(state.strategy)
            created: list[ModelRunner] = []
            try:
                versions = {
                    v.name: await asyncio.to_thread(workspace.registry.resolve_number, v.model)
                    for v in variants
                }
                if (
                    current is not None
                    and current.revision == state.revision
                    and current.versions == versions
                ):
                    return False
                loaded = self._loaded_runners()
                runners: dict[str, ModelRunner] = {}
                model_names = {v.name: parse_model_uri(v.model).name for v in variants}
                for name, number in versions.items():
                    key = (model_names[name], number)
                    if key not in loaded:
                        model, profile = await asyncio.to_thread(
                            _load_and_warm_up, workspace, key[0], number
                        )
                        runner = ModelRunner(self.name, model, self.config, self.metrics, profile)
                        runner.start()
                        loaded[key] = runner
                        created.append(runner)
                    runners[name] = loaded[key]
            except Exception as exc:
                for runner in created:  # loaded for this revision only: not serving
                    await runner.stop()
                self.load_error = f"{type(exc).__name__}: {exc}"
                self.metrics.model_loads.labels(self.name, "error").inc()
                logger.warning(
                    "deployment %s: strategy revision %d not applied: %s",
                    self.name,
                    state.revision,
                    self.load_error,
                )
                return False
            counter = self.metrics.variant_requests
            requests = {name: counter.labels(self.name, name) for name in runners}
            routing = Routing(state, runners, versions, requests)
            self.routing = routing
            self.load_error = None
            logger.info(
                "deployment %s: strategy %s revision %d, split %s",
                self.name,
                state.strategy.type,
                state.revision,
                routing.weights,
            )
            if current is not None:
                await self._stop_unused(current, routing)
            return True

    def _loaded_runners(self) -> dict[tuple[str, int], ModelRunner]:
        runners = [] if self.routing is None else list(self.routing.runners.values())
        if self.runner is not None:
            runners.append(self.runner)
        return {(r.model.name, r.version): r for r in runners}

    async def _stop_unused(self, old: Routing, new: Routing | None) -> None:
        keep = {id(self.runner), id(self.fallback_runner)}
        if new is not None:
            keep |= {id(r) for r in new.runners.values()}
        for runner in {id(r): r for r in old.runners.values()}.values():
            if id(runner) not in keep:
                await runner.stop()

    async def _load_fallback(self, workspace: Workspace, uri: str) -> None:
        if self.fallback_runner is not None:
            return
        ref = parse_model_uri(uri)
        try:
            number = await asyncio.to_thread(workspace.registry.resolve_number, ref)
            model, _ = await asyncio.to_thread(_load_and_warm_up, workspace, ref.name, number)
        except Exception as exc:
            logger.warning("deployment %s: fallback %s failed to load: %s", self.name, uri, exc)
            return
        self.fallback_runner = ModelRunner(self.name, model, self.config, self.metrics)
        self.fallback_runner.start()

    async def close(self) -> None:
        runners = [self.runner, self.fallback_runner]
        if self.routing is not None:
            runners += self.routing.runners.values()
        for runner in {id(r): r for r in runners if r is not None}.values():
            await runner.stop()


def _load_and_warm_up(
    workspace: Workspace, model_name: str, number: int
) -> tuple[LoadedModel, Profile | None]:
    """Load a version (verified), run it once on its stored input example, and read the profile
    of its reference data (None when it was registered without)."""
    version = workspace.registry.get_version(model_name, number)
    model = workspace.load_model(version.uri)
    model.predict(workspace.input_example(version))
    return model, workspace.reference_profile(version)
