"""The ASGI application: routes, error handlers, and the lifespan that loads models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from shipyard.errors import ShipyardError
from shipyard.server.config import ServerConfig
from shipyard.server.fastpath import InferenceFastPath
from shipyard.server.grpc_service import GrpcServer, start_grpc_server
from shipyard.server.inference import InferenceRoutes
from shipyard.server.metrics import ServerMetrics
from shipyard.server.rest import (
    build_routes,
    handle_http_error,
    handle_shipyard_error,
    handle_unexpected,
)
from shipyard.server.state import ServerState
from shipyard.settings import Settings
from shipyard.workspace import Workspace


def build_state(config: ServerConfig, settings: Settings) -> ServerState:
    """Server state on the workspace ``settings`` describe (models load at startup)."""
    workspace = Workspace(settings)
    events = workspace.events if config.prediction_log.enabled else None
    return ServerState(
        config,
        workspace,
        ServerMetrics(CollectorRegistry()),
        admin_token=_secret(settings.admin_token),
        inference_token=_secret(settings.inference_token),
        events=events,
    )


def _secret(value: object) -> str | None:
    return None if value is None else str(value.get_secret_value())  # type: ignore[attr-defined]


def create_app(state: ServerState) -> ASGIApp:
    """The REST application behind the inference fast path; its lifespan loads every
    deployment, runs the alias watcher and, when ``grpc_port`` is set, serves gRPC in the same
    event loop."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await state.start()
        grpc_server: GrpcServer | None = None
        try:
            if state.config.grpc_port is not None:
                grpc_server = await start_grpc_server(state, state.config.grpc_port)
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(state.config.shutdown_timeout_s)
            await state.stop()

    routes = InferenceRoutes(state)
    app = Starlette(
        routes=build_routes(state, routes),
        lifespan=lifespan,
        exception_handlers={
            ShipyardError: handle_shipyard_error,
            HTTPException: handle_http_error,
            Exception: handle_unexpected,
        },
    )
    return InferenceFastPath(app, routes)
