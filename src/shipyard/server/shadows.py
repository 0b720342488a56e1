"""Shadow traffic: requests mirrored to candidate versions after the primary has answered.

The primary's answer is built before anything is mirrored, and a mirrored call runs in a
thread pool of its own (never the default executor that the primary's model calls use), so a
slow or failing candidate cannot change the primary's status, body or latency. At most
``max_in_flight`` mirrored calls run or wait per process; beyond that a mirror is dropped and
counted (``shipyard_shadow_requests_total{outcome="dropped"}``). Each candidate's answer goes to
the prediction log under the primary's request id, with the shadow's variant name, so that
``shipyard experiments compare`` can pair them.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from shipyard.core.signature import Batch
from shipyard.server.endpoints import ModelRunner, Prediction
from shipyard.server.metrics import ServerMetrics
from shipyard.server.prediction_log import PredictionLog

logger = logging.getLogger(__name__)


class ShadowMirror:
    """Runs mirrored predictions off the request path and logs their answers."""

    def __init__(
        self,
        predictions: PredictionLog,
        metrics: ServerMetrics,
        *,
        threads: int = 4,
        max_in_flight: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self._predictions = predictions
        self._metrics = metrics
        self._pool: ThreadPoolExecutor | None = None
        self._threads = threads
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def mirror(
        self,
        deployment: str,
        shadows: tuple[tuple[str, ModelRunner], ...],
        batch: Batch,
        request_id: str,
        unit_key: str | None,
        started: float,
    ) -> None:
        """Start one mirrored call per shadow (returns at once)."""
        loop = asyncio.get_running_loop()
        for variant, runner in shadows:
            if len(self._tasks) >= self._max_in_flight:
                self._metrics.shadow_requests.labels(deployment, variant, "dropped").inc()
                continue
            task = loop.create_task(
                self._call(deployment, variant, runner, batch, request_id, unit_key, started)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(
        self,
        deployment: str,
        variant: str,
        runner: ModelRunner,
        batch: Batch,
        request_id: str,
        unit_key: str | None,
        started: float,
    ) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="shipyard-shadow")
        loop = asyncio.get_running_loop()
        try:
            output = await asyncio.wait_for(
                loop.run_in_executor(self._pool, runner.predict_inline, batch), self._timeout_s
            )
        except Exception as exc:
            self._metrics.shadow_requests.labels(deployment, variant, "error").inc()
            logger.info(
                "shadow %s of %s failed: %s: %s", variant, deployment, type(exc).__name__, exc
            )
            return
        self._metrics.shadow_requests.labels(deployment, variant, "ok").inc()
        self._predictions.log(
            deployment,
            batch,
            Prediction(output, runner.version),
            request_id,
            unit_key,
            started,
            variant,
        )

    async def close(self, timeout_s: float) -> None:
        """Let mirrored calls finish for up to ``timeout_s``, cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
