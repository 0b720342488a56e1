"""What every request handler shares: the endpoints, metrics, workspace, prediction log and
lifecycle flags."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from shipyard.core.signature import Batch
from shipyard.errors import NotFound, Unauthorized
from shipyard.experiments.controller import Outcome, tick
from shipyard.experiments.store import DeploymentState
from shipyard.features.store import FeatureStore
from shipyard.server.config import ServerConfig
from shipyard.server.endpoints import Endpoint, Prediction
from shipyard.server.exposure_log import ExposureLog
from shipyard.server.features import FeatureInputs
from shipyard.server.metrics import ServerMetrics
from shipyard.server.prediction_log import PredictionLog
from shipyard.server.routing import Assigned, Routing
from shipyard.server.shadows import ShadowMirror
from shipyard.storage.events import EventLog
from shipyard.workspace import Workspace

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ServerState:
    """Endpoints by name, plus readiness: ready once every endpoint serves, not while draining."""

    def __init__(
        self,
        config: ServerConfig,
        workspace: Workspace,
        metrics: ServerMetrics,
        *,
        admin_token: str | None,
        inference_token: str | None = None,
        events: EventLog | None = None,
    ) -> None:
        self.config = config
        self.workspace = workspace
        self.metrics = metrics
        self.endpoints = {d.name: Endpoint(d, metrics) for d in config.deployments}
        self.predictions = PredictionLog(events, config, metrics)  # events None: logs nothing
        self.exposures = ExposureLog(  # on even without the prediction log: experiments need it
            lambda: workspace.events,
            config.prediction_log,
            metrics,
            owns_events=events is None,
        )
        self.shadows = ShadowMirror(self.predictions, metrics)
        self.admin_token = admin_token
        self.inference_token = inference_token
        self.draining = False
        self.clock: Callable[[], datetime] = _utc_now  # the rollout controller's (tests set it)
        self.features: FeatureStore | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return not self.draining and all(e.ready for e in self.endpoints.values())

    def endpoint(self, name: str) -> Endpoint:
        found = self.endpoints.get(name)
        if found is None:
            raise NotFound(
                f"model {name!r} is not served here; served models: "
                f"{', '.join(sorted(self.endpoints))}"
            )
        return found

    def check_token(self, authorization: str | None, *, admin: bool) -> None:
        """Constant-time bearer-token check; admin routes are refused when no token is set."""
        expected = self.admin_token if admin else self.inference_token
        if expected is None:
            if admin:
                raise Unauthorized(
                    "the admin API is disabled: start the server with SHIPYARD_ADMIN_TOKEN set"
                )
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")

    def check_feedback_token(self, authorization: str | None) -> None:
        """Outcomes are writes: they need the inference token or the admin token (either, when
        set); with neither configured, feedback is refused."""
        given = (authorization or "").removeprefix("Bearer ").strip().encode()
        tokens = [t for t in (self.inference_token, self.admin_token) if t is not None]
        if not tokens:
            raise Unauthorized(
                "feedback is disabled: start the server with SHIPYARD_INFERENCE_TOKEN or "
                "SHIPYARD_ADMIN_TOKEN set"
            )
        if not any(hmac.compare_digest(given, t.encode()) for t in tokens):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")

    async def refresh(self, name: str | None = None) -> dict[str, bool]:
        """Re-resolve each endpoint's URI and strategy now and swap in what changed."""
        targets = [self.endpoint(name)] if name is not None else list(self.endpoints.values())
        changed = {e.name: await e.refresh(self.workspace) for e in targets}
        states = await asyncio.to_thread(self.workspace.rollouts.states, [e.name for e in targets])
        for endpoint in targets:
            if await endpoint.apply(states.get(endpoint.name), self.workspace):
                changed[endpoint.name] = True
        return changed

    # ------------------------------------------------------------ routed requests
    def routed(
        self,
        endpoint: Endpoint,
        routing: Routing,
        assigned: Assigned,
        batch: Batch,
        prediction: Prediction,
        request_id: str,
        started: float,
    ) -> None:
        """After a routed answer: count the variant, log the prediction with it, mirror the
        request to the shadows."""
        routing.requests[assigned.variant].inc()
        predictions = self.predictions
        if predictions.logs(endpoint.name):
            predictions.log(
                endpoint.name,
                batch,
                prediction,
                request_id,
                assigned.unit_key,
                started,
                assigned.variant,
            )
        if routing.shadows and routing.mirrored(request_id):
            self.shadows.mirror(
                endpoint.name, routing.shadows, batch, request_id, assigned.unit_key, started
            )

    def exposed(
        self,
        endpoint: Endpoint,
        routing: Routing,
        assigned: Assigned,
        request_id: str,
        status: int,
        elapsed_s: float,
    ) -> None:
        """Log the exposure of a request an experiment assigned (whatever its status)."""
        if routing.experiment is not None:
            self.exposures.log(
                routing.experiment,
                endpoint.name,
                assigned.variant,
                assigned.runner.version,
                request_id,
                assigned.unit_key,
                status,
                elapsed_s,
                routing.revision,
            )

    def require_features(self) -> FeatureStore:
        if self.features is None:
            raise NotFound("no feature definitions are applied (shipyard features apply FILE)")
        return self.features

    async def _load_features(self) -> None:
        """Load the applied feature definitions; required when a deployment names a service."""
        needed = [e for e in self.endpoints.values() if e.config.features is not None]
        store = self.workspace.features
        try:
            await asyncio.to_thread(store.load)
        except NotFound:
            if needed:
                raise
            return
        self.features = store
        for endpoint in needed:
            assert endpoint.config.features is not None
            endpoint.feature_inputs = FeatureInputs(
                store, endpoint.config.features, required=endpoint.config.features_required
            )

    async def start(self) -> None:
        await self._load_features()
        await self.refresh()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self.predictions.start()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            try:
                await self.refresh()
                await self.control()
            except Exception:  # keep watching whatever happened this round
                logger.exception("alias watcher round failed")

    async def control(self) -> None:
        """One look of the rollout controller at every canary or bandit served here (after
        writing the exposures queued so far, so that its figures include them)."""
        controlled = [
            e
            for e in self.endpoints.values()
            if e.routing is not None
            and e.routing.experiment is not None
            and e.routing.state.strategy.type in ("canary", "bandit")
        ]
        if not controlled:
            return
        await self.exposures.flush()
        for endpoint in controlled:
            routing = endpoint.routing
            assert routing is not None
            outcome = await asyncio.to_thread(self._tick, routing.state)
            if outcome is not None:
                self.metrics.rollout_decisions.labels(endpoint.name, outcome.action).inc()
                if outcome.state is not None:
                    await endpoint.apply(outcome.state, self.workspace)

    def _tick(self, state: DeploymentState) -> Outcome | None:
        ws = self.workspace
        assert state.experiment is not None
        experiment = ws.rollouts.experiment(state.experiment)

        def move_alias(model: str, alias: str, version: int, reason: str) -> None:
            ws.registry.set_alias(model, alias, version, reason=reason)

        return tick(
            ws.rollouts,
            ws.events,
            experiment,
            state,
            now=self.clock(),
            resolve_version=ws.registry.resolve_number,
            move_alias=move_alias,
        )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.shadows.close(self.config.drain_s)
        for endpoint in self.endpoints.values():
            await endpoint.close()
        await self.exposures.close()
        await self.predictions.close()  # after the last answer: writes everything queued
