"""The gRPC front end: Open Inference Protocol ``inference.GRPCInferenceService`` and the
standard ``grpc.health.v1.Health``, on ``grpc.aio`` in the event loop of the REST app.

The app's lifespan starts it when ``grpc_port`` is set (after the models load) and stops it
with ``server.stop(grace)`` on shutdown. Requests go through the same code as REST: tensors
decoded (typed ``contents`` or ``raw_input_contents``, :mod:`shipyard.core.oip_raw`), checked
against the signature (``tensors_to_batch``, ``check_finite``) and run by the endpoint; outputs
are always answered in ``raw_output_contents``, one per output and in order, since
tritonclient's ``as_numpy`` reads numeric outputs only from there.

Errors are the RPC status, with the shipyard message as details, mapped from the error's HTTP
status: 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 404 NOT_FOUND, 503 UNAVAILABLE (model not
ready, overloaded, circuit open), 504 DEADLINE_EXCEEDED (the model did not answer within the
deployment's ``timeout_s``: gRPC's code for an operation that ran out of time, as 504 is HTTP's),
500 INTERNAL (the model failed). RPCs this server does not have answer UNIMPLEMENTED. The
inference token, when set, is read from the ``authorization: Bearer …`` metadata of ModelInfer.
Answered inferences go to the prediction log (:mod:`shipyard.server.prediction_log`) with the
``x-request-id`` metadata as request id, else the request's ``id``, else a new one that is
answered as the response's ``id``.

Messages up to :data:`MAX_MESSAGE_BYTES` (256 MiB) are accepted and sent, each way; gRPC's own
default is 4 MiB and tritonclient allows 2 GiB. Beyond it gRPC answers RESOURCE_EXHAUSTED.
With several worker processes each binds the same port with ``SO_REUSEPORT`` and the kernel
spreads connections over them; a single worker binds exclusively, so a busy port is an error.
With ``tls_cert_file``/``tls_key_file`` the gRPC port speaks TLS with the REST port's certificate.

Health: ``Check`` with service ``""``, ``inference.GRPCInferenceService`` or ``readiness`` says
SERVING when the server is ready (every model loaded, not draining), NOT_SERVING otherwise;
``liveness`` is SERVING while the process answers; any other service is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shipyard import __version__
from shipyard.core.oip import TensorMetadata, check_finite, tensors_to_batch
from shipyard.core.oip_raw import (
    bytes_to_text,
    check_datatype,
    check_shape,
    decode_contents,
    decode_raw,
    encode_raw,
)
from shipyard.errors import InvalidInput, ShipyardError
from shipyard.server.access_log import log_access, start_trace
from shipyard.server.endpoints import Endpoint
from shipyard.server.features import request_columns
from shipyard.server.proto import inference_pb2 as pb
from shipyard.server.proto import inference_pb2_grpc as pb_grpc
from shipyard.server.routing import UNIT_HEADER, Assigned, Routing
from shipyard.server.state import ServerState

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
SERVICE_NAME = "inference.GRPCInferenceService"
WATCH_INTERVAL_S = 1.0

_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Parameters whose meaning this server cannot honour (Triton extensions).
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def status_code(exc: ShipyardError) -> grpc.StatusCode:
    """The gRPC status for a shipyard error (by its HTTP status; INTERNAL when unmapped)."""
    return _CODES.get(exc.status, grpc.StatusCode.INTERNAL)


async def _abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover


async def _abort_unexpected(context: Any, rpc: str, exc: Exception) -> NoReturn:
    logger.exception("unhandled error in gRPC %s", rpc)
    await _abort(context, grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


class InferenceServicer:
    """The six core RPCs over the server's endpoints (methods are named as the RPCs)."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self._state.ready)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        try:
            runner = self._state.endpoint(request.name).runner
        except ShipyardError as exc:
            await _abort(context, status_code(exc), exc.message)
        ready = runner is not None and request.version in ("", runner.version_label)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(  # noqa: N802
        self, request: Any, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="shipyard", version=__version__, extensions=[])

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        try:
            endpoint = self._state.endpoint(request.name)
            runner = endpoint.require_runner(request.version or None)
        except ShipyardError as exc:
            await _abort(context, status_code(exc), exc.message)
        return pb.ModelMetadataResponse(
            name=endpoint.name,
            versions=[runner.version_label],
            platform=runner.platform,
            inputs=[_tensor_metadata(t) for t in runner.inputs],
            outputs=[_tensor_metadata(t) for t in runner.outputs],
        )

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        """Infer, counted in the request metrics (``protocol="grpc"``, code = status name)."""
        started = time.perf_counter()
        try:
            endpoint = self._state.endpoint(request.model_name)
        except ShipyardError as exc:  # unknown models are not counted: labels stay bounded
            await _abort(context, status_code(exc), exc.message)
        metrics = self._state.metrics
        logged = self._state.config.access_log
        if logged:
            metadata = dict(context.invocation_metadata() or ())
            request_id, trace = start_trace(
                metadata.get("x-request-id") or request.id or None, metadata.get("traceparent")
            )
            context.set_trailing_metadata(
                (("x-request-id", request_id), ("traceparent", trace.header()))
            )
        in_flight = endpoint.in_flight_requests
        in_flight.enter()
        code = grpc.StatusCode.INTERNAL
        answered_by = ""
        routed: list[tuple[Routing, Assigned, str]] = []  # set when a strategy assigned it
        try:
            self._state.check_token(_authorization(context), admin=False)
            response = await self._infer(endpoint, request, context, started, routed)
            code = grpc.StatusCode.OK
            answered_by = response.model_version
            return response
        except ShipyardError as exc:
            code = status_code(exc)
            if exc.status == 503 and exc.code == "overloaded":
                metrics.shed.labels(endpoint.name).inc()
            await _abort(context, code, exc.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            await _abort_unexpected(context, "ModelInfer", exc)
        finally:
            in_flight.leave()
            runner = endpoint.runner
            if not answered_by and runner is not None:
                answered_by = runner.version_label
            elapsed = time.perf_counter() - started
            metrics.finish(endpoint.name, answered_by, "grpc", code.name, elapsed)
            if routed:
                routing, assigned, request_id = routed[0]
                status = _HTTP_STATUS.get(code, 500)
                self._state.exposed(endpoint, routing, assigned, request_id, status, elapsed)
            if logged:
                log_access(
                    "GRPC",
                    INFER_PATH,
                    code.name,
                    elapsed,
                    request_id=request_id,
                    trace=trace,
                    client=str(context.peer()),
                )

    async def _infer(
        self,
        endpoint: Endpoint,
        request: pb.ModelInferRequest,
        context: Any,
        started: float,
        routed: list[tuple[Routing, Assigned, str]],
    ) -> pb.ModelInferResponse:
        version = request.model_version or None
        routing = endpoint.routing if version is None else None
        assigned: Assigned | None = None
        request_id = ""
        if routing is not None:
            unit_key = _metadata(context, UNIT_HEADER)
            if unit_key is None and routing.unit_field in request.parameters:
                unit_key = _parameter_text(request.parameters[routing.unit_field])
            assigned = routing.assign(unit_key)
            request_id = _metadata(context, "x-request-id") or request.id
            if not request_id:
                request_id = self._state.predictions.new_request_id()
                await context.send_initial_metadata((("x-request-id", request_id),))
            routed.append((routing, assigned, request_id))
            runner = assigned.runner
        else:
            runner = endpoint.require_runner(version)
        if "sequence_id" in request.parameters:
            raise InvalidInput(
                "sequence batching (parameter 'sequence_id') is not supported", field="sequence_id"
            )
        tensors = decode_inputs(request)
        requested = requested_outputs(request, [t.name for t in runner.outputs])
        features = endpoint.feature_inputs
        if features is None:
            batch = tensors_to_batch(runner.model.signature, tensors)
        else:
            columns = features.enrich(request_columns(tensors))
            batch = runner.model.signature.coerce(columns, extra="ignore")
        check_finite(batch, allow_nan=endpoint.allow_nan, allow_inf=endpoint.allow_inf)
        endpoint.check_inputs(batch)
        prediction = await endpoint.predict(batch, version, runner)
        response = pb.ModelInferResponse(model_name=endpoint.name, id=request.id)
        if prediction.version is not None:
            response.model_version = str(prediction.version)
        if prediction.fallback is not None:
            response.parameters["fallback"].string_param = prediction.fallback
        if assigned is not None:
            response.parameters["variant"].string_param = assigned.variant
            if prediction.version is not None:
                response.parameters["model_version"].string_param = str(prediction.version)
        output = np.asarray(prediction.output)
        datatype, contents = encode_raw(output)
        for name in requested:
            response.outputs.add(name=name, datatype=datatype, shape=output.shape)
            response.raw_output_contents.append(contents)
        if assigned is not None and routing is not None:
            self._state.routed(endpoint, routing, assigned, batch, prediction, request_id, started)
            return response
        predictions = self._state.predictions
        if predictions.logs(endpoint.name):
            request_id = _metadata(context, "x-request-id") or request.id
            if not request_id:  # the protocol echoes ids, never invents one in the body
                request_id = predictions.new_request_id()
                await context.send_initial_metadata((("x-request-id", request_id),))
            unit_key = _metadata(context, UNIT_HEADER)
            predictions.log(endpoint.name, batch, prediction, request_id, unit_key, started)
        return response


_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}  # exposures record an HTTP status whatever the transport


def _parameter_text(parameter: pb.InferParameter) -> str | None:
    """An OIP parameter's value as text (a unit key may be sent as a string or a number)."""
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else str(getattr(parameter, kind))


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray[Any, Any]]:
    """The request's input tensors by name, from typed contents or raw contents (not both).

    BYTES inputs become str (UTF-8), as string columns are everywhere else.
    """
    inputs = request.inputs
    raw = request.raw_input_contents
    if not inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors", field="inputs")
    if raw:
        both = [i.name for i in inputs if i.contents.ListFields()]
        if both:
            raise InvalidInput(
                f"input {both[0]!r} sets contents while the request uses raw_input_contents; "
                "send every input one way",
                field=both[0],
            )
        if len(raw) != len(inputs):
            raise InvalidInput(
                f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs; "
                "send one per input, in input order",
                field="raw_input_contents",
            )
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for index, tensor in enumerate(inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f"inputs[{index}].name must be a non-empty string", field="inputs")
        _refuse_parameters(tensor.parameters, _SHARED_MEMORY, f"input {name!r}")
        datatype = check_datatype(tensor.datatype, name)
        shape = check_shape(tensor.shape, name)
        if raw:
            array = decode_raw(raw[index], datatype, shape, name)
        else:
            fields = {field.name: values for field, values in tensor.contents.ListFields()}
            array = decode_contents(fields, datatype, shape, name)
        if datatype == "BYTES":
            array = bytes_to_text(array, name)
        if name in tensors:
            raise InvalidInput(f"input names must be unique; {name!r} repeats", field=name)
        tensors[name] = array
    return tensors


def requested_outputs(request: pb.ModelInferRequest, known: list[str]) -> list[str]:
    """The output names to answer: those requested, else every output of the model."""
    if not request.outputs:
        return known
    names = []
    for index, output in enumerate(request.outputs):
        if output.name not in known:
            raise InvalidInput(
                f"outputs[{index}] names unknown output {output.name!r}; "
                f"outputs: {', '.join(known)}",
                field=f"outputs[{index}]",
            )
        _refuse_parameters(
            output.parameters, (*_SHARED_MEMORY, "classification"), f"output {output.name!r}"
        )
        names.append(output.name)
    return names


def _refuse_parameters(parameters: Any, refused: tuple[str, ...], where: str) -> None:
    for key in refused:
        if key in parameters:
            raise InvalidInput(
                f"{where}: parameter {key!r} is not supported (no shared memory or "
                "classification extension); send the data in the request",
                field=key,
            )


def _tensor_metadata(tensor: TensorMetadata) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )


def _metadata(context: Any, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return str(value)
    return None


def _authorization(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


class HealthServicer:
    """``grpc.health.v1.Health`` answered from the server's readiness (see the module doc)."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._closing = asyncio.Event()

    def status(self, service: str) -> Any:
        """The serving status of ``service``, or None for a service this server does not know."""
        serving = health_pb2.HealthCheckResponse.SERVING
        if service == "liveness":
            return serving
        if service in ("", SERVICE_NAME, "readiness"):
            return serving if self._state.ready else health_pb2.HealthCheckResponse.NOT_SERVING
        return None

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        status = self.status(request.service)
        if status is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"unknown service {request.service!r}; known: '', {SERVICE_NAME}, "
                "readiness, liveness",
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: Any, context: Any) -> Any:  # noqa: N802
        services = ("", SERVICE_NAME, "readiness", "liveness")
        return health_pb2.HealthListResponse(
            statuses={s: health_pb2.HealthCheckResponse(status=self.status(s)) for s in services}
        )

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        """The status now and at every change (checked each ``WATCH_INTERVAL_S``), until the
        server stops."""
        last = None
        while not self._closing.is_set():
            status = self.status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), WATCH_INTERVAL_S)

    def close(self) -> None:
        """End every Watch stream, so that stopping the server need not wait for them."""
        self._closing.set()


class GrpcServer:
    """The running gRPC server of one worker process."""

    def __init__(self, server: Any, health: HealthServicer, port: int) -> None:
        self._server = server
        self._health = health
        self.port = port

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs and let those in flight finish for up to ``grace_s``."""
        self._health.close()
        await self._server.stop(grace_s)
        logger.info("gRPC server on port %d stopped", self.port)


async def start_grpc_server(state: ServerState, port: int) -> GrpcServer:
    """Listen for gRPC on ``state.config.host``:``port`` (0: any free port) in this loop."""
    config = state.config
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        ]
    )
    servicer = InferenceServicer(state)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = HealthServicer(state)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"{host}:{port}"
    try:
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            key, chain = config.tls_key_file.read_bytes(), config.tls_cert_file.read_bytes()
            credentials = grpc.ssl_server_credentials([(key, chain)])
            bound = int(server.add_secure_port(address, credentials))
        else:
            bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise RuntimeError(f"cannot listen for gRPC on {address}: {exc}") from exc
    await server.start()
    tls = "with TLS" if config.tls_cert_file is not None else "without TLS"
    logger.info("gRPC (Open Inference Protocol) listening on %s:%d %s", host, bound, tls)
    return GrpcServer(server, health, bound)
