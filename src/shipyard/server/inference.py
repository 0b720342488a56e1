"""The inference routes (OIP v2 infer, v1 predict) independent of the HTTP framework.

``InferenceRoutes.answer`` takes the route's parameters, a header lookup and a body reader, and
returns status, JSON bytes and headers. Two transports use it: the raw-ASGI fast path in front of
the application (the hot path: no router, no Request/Response objects) and the Starlette routes
that declare the same paths (405 for other methods, OpenAPI). Token check, in-flight gauge,
latency and status counts happen here once for both.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from shipyard.core.oip import check_finite, decode_tensor, encode_output, tensors_to_batch
from shipyard.core.signature import Batch
from shipyard.core.v1_protocol import v1_batch, v1_columns
from shipyard.errors import CircuitOpen, InvalidInput, PayloadTooLarge, ShipyardError
from shipyard.server.endpoints import Endpoint, ModelRunner, Prediction
from shipyard.server.features import request_columns
from shipyard.server.prediction_log import REQUEST_ID_HEADER
from shipyard.server.routing import UNIT_HEADER, VARIANT_HEADER, Assigned, unit_in_body
from shipyard.server.state import ServerState

logger = logging.getLogger(__name__)

Kind = Literal["v2", "v1"]
HeaderLookup = Callable[[str], str | None]
BodyReader = Callable[[int], Awaitable[bytes]]
_DUMP = orjson.OPT_SERIALIZE_NUMPY
VERSION_HEADER = "X-Shipyard-Model-Version"


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs 3x
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


def error_answer(exc: ShipyardError) -> Answer:
    headers = {}
    if exc.status == 503:
        wait = exc.retry_after_s if isinstance(exc, CircuitOpen) else 1.0
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return Answer(exc.status, orjson.dumps({"error": exc.message}), headers)


def check_body_headers(header: HeaderLookup, limit: int) -> None:
    """Refuse compressed bodies, declared sizes over ``limit`` and the binary extension."""
    encoding = header("content-encoding")
    if encoding and (encoding := encoding.lower()) != "identity":  # none or "": identity
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported; send an uncompressed body",
            field="Content-Encoding",
        )
    declared = header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    if header("inference-header-content-length") not in (None, declared):
        raise InvalidInput(
            "the binary tensor data extension is not supported; send JSON data "
            "(tritonclient and KServe clients: binary_data=False)",
            field="Inference-Header-Content-Length",
        )


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", field="body") from exc


class InferenceRoutes:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.limit = state.config.max_body_bytes

    async def answer(
        self,
        kind: Kind,
        model: str,
        version: str | None,
        header: HeaderLookup,
        read_body: BodyReader,
    ) -> Answer:
        state = self.state
        endpoint = state.endpoints.get(model)
        if endpoint is None:
            try:
                endpoint = state.endpoint(model)
            except ShipyardError as exc:
                return error_answer(exc)
        metrics = state.metrics
        started = time.perf_counter()
        in_flight = endpoint.in_flight_requests
        in_flight.enter()
        answer: Answer | None = None
        answered_by: str | None = None
        routing = endpoint.routing if version is None else None  # a named version: no routing
        assigned: Assigned | None = None
        request_id = ""
        try:
            if state.inference_token is not None:
                state.check_token(header("authorization"), admin=False)
            check_body_headers(header, self.limit)
            body = parse_json(await read_body(self.limit))
            if routing is not None:
                assigned = routing.assign(
                    header(UNIT_HEADER) or unit_in_body(body, routing.unit_field)
                )
                request_id = _request_id(header, body) or state.predictions.new_request_id()
            runner = None if assigned is None else assigned.runner
            if kind == "v2":
                payload, prediction, batch = await _infer_v2(endpoint, version, body, runner)
            else:
                payload, prediction, batch = await _predict_v1(endpoint, body, runner)
            headers = _answer_headers(prediction)
            answered_by = headers.get(VERSION_HEADER)
            if assigned is None:
                answer = Answer(200, orjson.dumps(payload, option=_DUMP), headers)
                state.predictions.log_http(
                    endpoint.name, batch, prediction, header, payload.get("id"), headers, started
                )
            else:
                assert routing is not None
                _add_variant(payload, kind, assigned.variant, headers, request_id)
                answer = Answer(200, orjson.dumps(payload, option=_DUMP), headers)
                state.routed(endpoint, routing, assigned, batch, prediction, request_id, started)
        except ShipyardError as exc:
            if exc.code == "overloaded":
                metrics.shed.labels(model).inc()
            answer = error_answer(exc)
        except Exception as exc:
            logger.exception("inference on %s failed unexpectedly", model)
            message = f"internal error: {type(exc).__name__}: {exc}"
            answer = Answer(500, orjson.dumps({"error": message}), {})
        finally:
            in_flight.leave()
            if answered_by is None:
                runner = endpoint.runner
                answered_by = runner.version_label if runner else ""
            status = 500 if answer is None else answer.status
            elapsed = time.perf_counter() - started
            metrics.finish(model, answered_by, "rest", status, elapsed)
            if assigned is not None and routing is not None:
                if answer is not None and status != 200:
                    answer.headers[VARIANT_HEADER] = assigned.variant
                    answer.headers[REQUEST_ID_HEADER] = request_id
                state.exposed(endpoint, routing, assigned, request_id, status, elapsed)
        return answer


async def _infer_v2(
    endpoint: Endpoint, version: str | None, body: Any, runner: ModelRunner | None = None
) -> tuple[dict[str, Any], Prediction, Batch]:
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object with 'inputs'", field="body")
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors", field="inputs")
    if len(raw_inputs) == 1:
        name, array = decode_tensor(raw_inputs[0], 0)
        tensors = {name: array}
    else:
        tensors = dict(decode_tensor(raw, i) for i, raw in enumerate(raw_inputs))
        if len(tensors) != len(raw_inputs):
            raise InvalidInput("input names must be unique", field="inputs")
    if runner is None:
        runner = endpoint.require_runner(version)
    outputs = body.get("outputs")
    requested = (
        runner.output_names if outputs is None else _requested_outputs(outputs, runner.output_names)
    )
    features = endpoint.feature_inputs
    if features is None:
        batch = tensors_to_batch(runner.model.signature, tensors)
    else:
        columns = features.enrich(request_columns(tensors))
        batch = runner.model.signature.coerce(columns, extra="ignore")
    check_finite(batch, allow_nan=endpoint.allow_nan, allow_inf=endpoint.allow_inf)
    if runner.validator is not None:  # (check_inputs returns at once without one)
        endpoint.check_inputs(batch)
    prediction = await endpoint.predict(batch, version, runner)
    payload: dict[str, Any] = {"model_name": endpoint.name}
    if prediction.version is not None:
        payload["model_version"] = str(prediction.version)
    request_id = body.get("id")
    if isinstance(request_id, str):
        payload["id"] = request_id
    if prediction.fallback is not None:
        payload["parameters"] = {"fallback": prediction.fallback}
    if len(requested) == 1:  # no comprehension frame for the usual single output
        payload["outputs"] = [encode_output(prediction.output, requested[0])]
    else:
        payload["outputs"] = [encode_output(prediction.output, name) for name in requested]
    return payload, prediction, batch


async def _predict_v1(
    endpoint: Endpoint, body: Any, runner: ModelRunner | None = None
) -> tuple[dict[str, Any], Prediction, Batch]:
    if runner is None:
        runner = endpoint.require_runner()
    features = endpoint.feature_inputs
    if features is None:
        batch = v1_batch(body, runner.model.signature)
    else:
        batch = runner.model.signature.coerce(features.enrich(v1_columns(body)), extra="ignore")
    check_finite(batch, allow_nan=endpoint.allow_nan, allow_inf=endpoint.allow_inf)
    endpoint.check_inputs(batch)
    prediction = await endpoint.predict(batch, None, runner)
    payload: dict[str, Any] = {
        "predictions": prediction.output,
        "model_name": endpoint.name,
        "model_version": None if prediction.version is None else str(prediction.version),
    }
    if prediction.fallback is not None:
        payload["fallback"] = prediction.fallback
    return payload, prediction, batch


def _request_id(header: HeaderLookup, body: Any) -> str | None:
    """The id a request brings: ``X-Request-ID``, else an OIP body's ``id``."""
    given = header("x-request-id")
    if given:
        return given
    body_id = body.get("id") if isinstance(body, dict) else None
    return body_id if isinstance(body_id, str) and body_id else None


def _add_variant(
    payload: dict[str, Any], kind: Kind, variant: str, headers: dict[str, str], request_id: str
) -> None:
    """Say which variant answered: a header, and the OIP response's ``parameters`` (v2) or a
    ``variant`` field (v1); the request id travels in ``X-Request-ID``."""
    headers[VARIANT_HEADER] = variant
    headers[REQUEST_ID_HEADER] = request_id
    if kind == "v2":
        payload.setdefault("parameters", {})["variant"] = variant
        version = payload.get("model_version")
        if version is not None:
            payload["parameters"]["model_version"] = version
    else:
        payload["variant"] = variant


def _answer_headers(prediction: Prediction) -> dict[str, str]:
    headers = {}
    if prediction.version is not None:
        headers[VERSION_HEADER] = str(prediction.version)
    if prediction.fallback is not None:
        headers["X-Shipyard-Fallback"] = prediction.fallback
    return headers


def _requested_outputs(raw: Any, known: Sequence[str]) -> Sequence[str]:
    if raw is None:
        return known
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...}", field="outputs")
    names: list[str] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in known:
            raise InvalidInput(
                f"outputs[{index}] names unknown output {name!r}; outputs: {', '.join(known)}",
                field=f"outputs[{index}]",
            )
        names.append(str(name))  # one of ``known``
    return names
