"""What every request handler shares: the endpoints, metrics, workspace, prediction log and
lifecycle flags."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

from shipyard.errors import NotFound, Unauthorized
from shipyard.features.store import FeatureStore
from shipyard.server.config import ServerConfig
from shipyard.server.endpoints import Endpoint
from shipyard.server.features import FeatureInputs
from shipyard.server.metrics import ServerMetrics
from shipyard.server.prediction_log import PredictionLog
from shipyard.storage.events import EventLog
from shipyard.workspace import Workspace

logger = logging.getLogger(__name__)


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
        self.admin_token = admin_token
        self.inference_token = inference_token
        self.draining = False
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
        """Re-resolve each endpoint's URI now and swap in changed versions."""
        targets = [self.endpoint(name)] if name is not None else list(self.endpoints.values())
        return {e.name: await e.refresh(self.workspace) for e in targets}

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
            except Exception:  # keep watching whatever happened this round
                logger.exception("alias watcher round failed")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for endpoint in self.endpoints.values():
            await endpoint.close()
        await self.predictions.close()  # after the last answer: writes everything queued
