"""REST routes: Open Inference Protocol v2, the v1 JSON form, metrics and the admin API.

Every error is ``{"error": message}`` with the status of the shipyard error behind it (400 for
client errors on OIP routes, never FastAPI-style 422); the hot path parses with orjson and
builds NumPy arrays directly, without pandas.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard import __version__
from shipyard.core.oip import check_finite, decode_tensor, encode_output, tensors_to_batch
from shipyard.core.v1_protocol import v1_batch
from shipyard.errors import CircuitOpen, InvalidInput, NotFound, PayloadTooLarge, ShipyardError
from shipyard.server.endpoints import Endpoint, Prediction
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


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, refusing bodies over ``limit`` bytes (413)."""
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported; send an uncompressed body",
            field="Content-Encoding",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    if request.headers.get("inference-header-content-length") not in (None, declared):
        raise InvalidInput(
            "the binary tensor data extension is not supported; send JSON data "
            "(tritonclient: binary_data=False)",
            field="Inference-Header-Content-Length",
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from exc


def build_routes(state: ServerState) -> list[Route]:
    limit = state.config.max_body_bytes
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
        return await _timed(state, request, "rest", _infer_v2)

    async def predict_v1(request: Request) -> Response:
        target = request.path_params["target"]
        if not target.endswith(":predict"):
            raise NotFound(f"no route {request.url.path}; use POST /v1/models/NAME:predict")
        request.path_params["model"] = target.removesuffix(":predict")
        return await _timed(state, request, "rest", _predict_v1)

    async def _infer_v2(request: Request, endpoint: Endpoint) -> Response:
        body = await read_json(request, limit)
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object with 'inputs'", field="body")
        raw_inputs = body.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise InvalidInput("'inputs' must be a non-empty list of tensors", field="inputs")
        tensors = dict(decode_tensor(raw, i) for i, raw in enumerate(raw_inputs))
        if len(tensors) != len(raw_inputs):
            raise InvalidInput("input names must be unique", field="inputs")
        runner = endpoint.require_runner(request.path_params.get("version"))
        requested = _requested_outputs(body.get("outputs"), [t.name for t in runner.outputs])
        batch = tensors_to_batch(runner.model.signature, tensors)
        check_finite(
            batch, allow_nan=endpoint.config.allow_nan, allow_inf=endpoint.config.allow_inf
        )
        prediction = await endpoint.predict(batch, request.path_params.get("version"))
        payload: dict[str, Any] = {"model_name": endpoint.name}
        if prediction.version is not None:
            payload["model_version"] = str(prediction.version)
        request_id = body.get("id")
        if isinstance(request_id, str):
            payload["id"] = request_id
        if prediction.fallback is not None:
            payload["parameters"] = {"fallback": prediction.fallback}
        payload["outputs"] = [encode_output(prediction.output, name) for name in requested]
        return json_response(payload, headers=_answer_headers(prediction))

    async def _predict_v1(request: Request, endpoint: Endpoint) -> Response:
        body = await read_json(request, limit)
        runner = endpoint.require_runner()
        batch = v1_batch(body, runner.model.signature)
        check_finite(
            batch, allow_nan=endpoint.config.allow_nan, allow_inf=endpoint.config.allow_inf
        )
        prediction = await endpoint.predict(batch)
        payload: dict[str, Any] = {
            "predictions": prediction.output,
            "model_name": endpoint.name,
            "model_version": None if prediction.version is None else str(prediction.version),
        }
        if prediction.fallback is not None:
            payload["fallback"] = prediction.fallback
        return json_response(payload, headers=_answer_headers(prediction))

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
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/admin/reload", admin_reload, methods=["POST"]),
        Route("/admin/status", admin_status, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


Handler = Callable[[Request, Endpoint], Awaitable[Response]]


async def _timed(state: ServerState, request: Request, protocol: str, handler: Handler) -> Response:
    """Run an inference handler with token check, in-flight gauge, latency and status counts."""
    started = time.perf_counter()
    name = request.path_params["model"]
    endpoint = state.endpoint(name)
    metrics = state.metrics
    in_flight = metrics.in_flight.labels(name)
    in_flight.inc()
    status = 500
    try:
        state.check_token(request.headers.get("authorization"), admin=False)
        response = await handler(request, endpoint)
        status = response.status_code
        return response
    except ShipyardError as exc:
        status = exc.status
        if exc.status == 503 and exc.code == "overloaded":
            metrics.shed.labels(name).inc()
        raise
    finally:
        in_flight.dec()
        runner = endpoint.runner
        metrics.count(name, runner.version_label if runner else "", protocol, status)
        metrics.request_duration.labels(name, protocol).observe(time.perf_counter() - started)


def _answer_headers(prediction: Prediction) -> dict[str, str]:
    headers = {}
    if prediction.version is not None:
        headers["X-Shipyard-Model-Version"] = str(prediction.version)
    if prediction.fallback is not None:
        headers["X-Shipyard-Fallback"] = prediction.fallback
    return headers


def _requested_outputs(raw: Any, known: list[str]) -> list[str]:
    if raw is None:
        return known
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...}", field="outputs")
    names = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise InvalidInput(
                f"outputs[{index}] names unknown output {name!r}; outputs: {', '.join(known)}",
                field=f"outputs[{index}]",
            )
        names.append(name)
    return names


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
    headers = None
    if exc.status == 503:
        wait = exc.retry_after_s if isinstance(exc, CircuitOpen) else 1.0
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    return error_response(exc.status, exc.message, headers)


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
