"""REST routes: Open Inference Protocol v2, the v1 JSON form, metrics and the admin API.

Every error is ``{"error": message}`` with the status of the shipyard error behind it (400 for
client errors on OIP routes, never FastAPI-style 422). The inference routes' work lives in
``inference.py``; ``POST`` to them normally arrives through the fast path in ``fastpath.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard import __version__
from shipyard.errors import InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.monitor import feedback_request, log_outcomes
from shipyard.server.features import online_request
from shipyard.server.inference import InferenceRoutes, Kind, error_answer, parse_json
from shipyard.server.openapi import openapi_document
from shipyard.server.state import ServerState

logger = logging.getLogger(__name__)

JSON = "application/json"
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload, option=_DUMP_OPTIONS), status, headers, JSON)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def build_routes(state: ServerState, routes: InferenceRoutes) -> list[Route]:
    """Every REST route; inference goes through ``routes`` (shared with the fast path)."""
    metrics = state.metrics

    async def live(_: Request) -> Response:
        return json_response({"live": True})

    async def ready(_: Request) -> Response:
        if state.draining:
            return error_response(503, "server is shutting down")
        if not state.ready:
            waiting = sorted(n for n, e in state.endpoints.items() if not e.ready)
            return error_response(400, f"models not ready yet: {', '.join(waiting)}")
        return json_response({"ready": True})

    async def server_metadata(_: Request) -> Response:
        return json_response({"name": "shipyard", "version": __version__, "extensions": []})

    async def model_ready(request: Request) -> Response:
        endpoint = state.endpoint(request.path_params["model"])
        version = request.path_params.get("version")
        runner = endpoint.runner
        if runner is None or (version is not None and version != runner.version_label):
            which = endpoint.name if version is None else f"{endpoint.name} version {version}"
            return error_response(400, f"model {which} is not ready")
        return json_response({"name": endpoint.name, "ready": True})

    async def model_metadata(request: Request) -> Response:
        endpoint = state.endpoint(request.path_params["model"])
        runner = endpoint.require_runner(request.path_params.get("version"))
        return json_response(
            {
                "name": endpoint.name,
                "versions": [runner.version_label],
                "platform": runner.platform,
                "inputs": [t.to_json() for t in runner.inputs],
                "outputs": [t.to_json() for t in runner.outputs],
            }
        )

    async def infer(request: Request) -> Response:
        params = request.path_params
        return await _answer(request, "v2", params["model"], params.get("version"))

    async def predict_v1(request: Request) -> Response:
        target = request.path_params["target"]
        if not target.endswith(":predict"):
            raise NotFound(f"no route {request.url.path}; use POST /v1/models/NAME:predict")
        return await _answer(request, "v1", target.removesuffix(":predict"), None)

    async def _answer(request: Request, kind: Kind, model: str, version: str | None) -> Response:
        async def read_body(limit: int) -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        answer = await routes.answer(kind, model, version, request.headers.get, read_body)
        return Response(answer.body, answer.status, answer.headers, JSON)

    async def online_features(request: Request) -> Response:
        state.check_token(request.headers.get("authorization"), admin=False)
        store = state.require_features()
        body = await request.body()
        if len(body) > state.config.max_body_bytes:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {state.config.max_body_bytes} bytes"
            )
        features, entities, request_data, full = online_request(parse_json(body))
        found = store.get_online_features(
            features, entities, request_data=request_data, full_feature_names=full
        )
        return json_response(found.to_dict())

    async def feedback(request: Request) -> Response:
        state.check_feedback_token(request.headers.get("authorization"))
        body = await request.body()
        if len(body) > state.config.max_body_bytes:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {state.config.max_body_bytes} bytes"
            )
        model, outcomes = feedback_request(parse_json(body))
        state.endpoint(model)  # only served models take outcomes
        stored = await asyncio.to_thread(log_outcomes, state.workspace, model, outcomes)
        return json_response({"stored": stored, "model": model})

    async def metrics_route(request: Request) -> Response:
        body, content_type = metrics.expose(request.headers.get("accept"))
        return Response(body, 200, media_type=content_type)

    async def admin_reload(request: Request) -> Response:
        state.check_token(request.headers.get("authorization"), admin=True)
        name = request.query_params.get("model")
        swapped = await state.refresh(name)
        return json_response({"reloaded": swapped, "status": _status(state)})

    async def admin_status(request: Request) -> Response:
        state.check_token(request.headers.get("authorization"), admin=True)
        return json_response({"status": _status(state), "ready": state.ready})

    async def admin_strategy(request: Request) -> Response:
        """GET: the deployment's strategy and split; PUT: set one (``{"strategy": {...},
        "reason": ...}``), applied here at once and by other replicas on their interval."""
        state.check_token(request.headers.get("authorization"), admin=True)
        endpoint = state.endpoint(request.path_params["model"])
        rollouts = state.workspace.rollouts
        if request.method == "PUT":
            body = await request.body()
            if len(body) > state.config.max_body_bytes:
                raise PayloadTooLarge("request body is too large")
            data = parse_json(body)
            if not isinstance(data, dict) or not isinstance(data.get("strategy"), dict):
                raise InvalidInput(
                    'body must be {"strategy": {"type": ...}, "reason": ...}',
                    field="strategy",
                )
            reason = data.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise InvalidInput("'reason' must be a string", field="reason")
            await asyncio.to_thread(
                rollouts.set_strategy,
                endpoint.name,
                data["strategy"],
                actor="admin-api",
                reason=reason,
            )
            await state.refresh(endpoint.name)
        elif request.method == "POST":  # /switch
            await asyncio.to_thread(rollouts.switch, endpoint.name, actor="admin-api")
            await state.refresh(endpoint.name)
        return json_response(_routing(state, endpoint.name))

    async def admin_history(request: Request) -> Response:
        state.check_token(request.headers.get("authorization"), admin=True)
        endpoint = state.endpoint(request.path_params["model"])
        changes = await asyncio.to_thread(state.workspace.rollouts.history, endpoint.name)
        return json_response(
            {
                "deployment": endpoint.name,
                "changes": [
                    {
                        "revision": c.revision,
                        "action": c.action,
                        "strategy": c.strategy,
                        "weights": c.weights,
                        "experiment": c.experiment,
                        "actor": c.actor,
                        "reason": c.reason,
                        "at": c.at.isoformat(),
                    }
                    for c in changes
                ],
            }
        )

    async def openapi(_: Request) -> Response:
        return json_response(openapi_document(sorted(state.endpoints)))

    versioned = "/v2/models/{model}/versions/{version}"
    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/", server_metadata, methods=["GET"]),
        Route("/v2/models/{model}/ready", model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{model}", model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route(f"{versioned}/infer", infer, methods=["POST"]),
        Route("/v1/models/{target}", predict_v1, methods=["POST"]),
        Route("/v1/features/online", online_features, methods=["POST"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
        Route("/admin/status", admin_status, methods=["GET"]),
        Route("/admin/deployments/{model}/strategy", admin_strategy, methods=["GET", "PUT"]),
        Route("/admin/deployments/{model}/switch", admin_strategy, methods=["POST"]),
        Route("/admin/deployments/{model}/history", admin_history, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _routing(state: ServerState, name: str) -> dict[str, Any]:
    routing = state.endpoint(name).routing
    if routing is None:
        return {"deployment": name, "strategy": None, "serves": state.endpoint(name).config.model}
    return {
        "deployment": name,
        "revision": routing.revision,
        "strategy": routing.state.strategy.model_dump(mode="json"),
        "experiment": routing.experiment,
        "weights": routing.weights,
        "versions": routing.versions,
    }


def _status(state: ServerState) -> dict[str, Any]:
    return {
        name: {
            "model": e.config.model,
            "version": e.runner.version if e.runner else None,
            "ready": e.ready,
            "load_error": e.load_error,
        }
        for name, e in state.endpoints.items()
    }


async def handle_shipyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShipyardError)
    answer = error_answer(exc)
    return Response(answer.body, answer.status, answer.headers, JSON)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {
        404: f"no route {request.url.path}",
        405: f"method {request.method} not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
