"""KServe's Python clients against a running server, run as a child process by
test_kserve_clients.py with the interpreter of ``.venv-kserve``.

kserve pins protobuf < 7 and pandas < 3, so it cannot share shipyard's environment, and its
``grpc_predict_v2_pb2`` registers the same protobuf names as shipyard's stubs (protocol doc
§4.9): this script runs in kserve's own venv and never imports shipyard.

Usage: ``python kserve_client_checks.py REST_URL GRPC_HOST:PORT < plan.json``. The plan gives
the request data; stdout gets one JSON object, check name → ``{"value": ...}`` or
``{"error": {"type", "status", "message", ...}}``. Only observations are made here (what the
clients returned or raised, what went over the wire); the test decides what is right.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    InferResponse,
    RESTConfig,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest import v2_datamodels
from kserve.utils.numpy_codec import to_np_dtype


async def observe(results: dict[str, Any], name: str, call: Callable[[], Awaitable[Any]]) -> None:
    try:
        results[name] = {"value": await call()}
    except httpx.HTTPStatusError as exc:
        response = exc.response
        results[name] = {
            "error": {
                "type": type(exc).__name__,
                "status": response.status_code,
                "message": str(exc),
                "content_type": response.headers.get("content-type"),
                "body": response.text,
            }
        }
    except grpc.RpcError as exc:
        status = exc.code().name
        results[name] = {"error": {"type": "RpcError", "status": status, "message": exc.details()}}
    except Exception as exc:
        results[name] = {"error": {"type": type(exc).__name__, "status": None, "message": str(exc)}}


class Recorder(httpx.AsyncBaseTransport):
    """An httpx transport (``RESTConfig(transport=...)``) that keeps the last exchange."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.last: dict[str, Any] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.last = {
            "request_headers": dict(request.headers),
            "request_body": request.content,
            "response_headers": dict(response.headers),
            "response_body": response.content,
        }
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _array(spec: dict[str, Any]) -> np.ndarray[Any, Any]:
    if spec["datatype"] == "BYTES":
        return np.array([v.encode() for v in spec["data"]], dtype=np.object_)
    return np.array(spec["data"], dtype=to_np_dtype(spec["datatype"]))


def _inputs(tensors: dict[str, Any], mode: str) -> list[InferInput]:
    """``json``/``typed``: data as a flat list (REST JSON ``data``, gRPC typed ``contents``);
    ``binary``/``raw``: bytes (REST binary extension, gRPC ``raw_input_contents``)."""
    out = []
    for name, spec in tensors.items():
        array = _array(spec)
        tensor = InferInput(name, list(array.shape), spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=mode in ("binary", "raw"))
        out.append(tensor)
    return out


def _plain(array: Any) -> dict[str, Any]:
    flat = [v.decode() if isinstance(v, bytes) else v for v in np.asarray(array).ravel().tolist()]
    return {"data": flat, "shape": list(np.shape(array))}


def _response(response: InferResponse) -> dict[str, Any]:
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": [
            {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
            for o in response.outputs
        ],
        "output": _plain(response.outputs[0].as_numpy()),
    }


async def grpc_checks(address: str, plan: dict[str, Any], results: dict[str, Any]) -> None:
    client = InferenceGRPCClient(address, retries=0, timeout=30)
    await observe(results, "grpc.live", client.is_server_live)
    await observe(results, "grpc.ready", client.is_server_ready)
    await observe(results, "grpc.model_ready", lambda: client.is_model_ready("num"))
    await observe(results, "grpc.model_ready_unknown", lambda: client.is_model_ready("nope"))

    # The clients have no metadata calls; kserve's generated stub has the RPCs.
    channel = grpc.aio.insecure_channel(address)
    stub = GRPCInferenceServiceStub(channel)

    async def server_metadata() -> dict[str, Any]:
        got = await stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=30)
        return {"name": got.name, "version": got.version, "extensions": list(got.extensions)}

    async def model_metadata(name: str, version: str = "") -> dict[str, Any]:
        got = await stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version))
        return {
            "name": got.name,
            "versions": list(got.versions),
            "platform": got.platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in got.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in got.outputs
            ],
        }

    await observe(results, "grpc.server_metadata", server_metadata)
    await observe(results, "grpc.model_metadata", lambda: model_metadata("num"))
    await observe(results, "grpc.model_metadata_v1", lambda: model_metadata("num", "1"))
    await observe(results, "grpc.model_metadata_unknown", lambda: model_metadata("nope"))
    await channel.close()

    async def infer(case: dict[str, Any], mode: str, **options: Any) -> dict[str, Any]:
        outputs = options.pop("outputs", None)
        request = InferRequest(
            case["model"],
            _inputs(case["tensors"], mode),
            request_outputs=[RequestedOutput(n) for n in outputs] if outputs else None,
            **options,
        )
        return _response(await client.infer(request))

    cases = plan["cases"]
    for mode in ("typed", "raw"):
        for name in plan[f"grpc_{mode}"]:
            await observe(results, f"grpc.{mode}.{name}", lambda n=name, m=mode: infer(cases[n], m))
    num = cases["FP64"]
    for mode in ("typed", "raw"):
        await observe(
            results,
            f"grpc.{mode}.options",
            lambda m=mode: infer(
                num,
                m,
                request_id=f"kserve-{m}",
                model_version="1",
                parameters={"top_k": 3, "tag": "x", "flag": True},
                outputs=["output"],
            ),
        )

    async def large() -> dict[str, Any]:
        # Bigger than gRPC's 4 MiB default each way (the input as bytes, the output too).
        rows = plan["large_rows"]
        matrix = (np.arange(rows * 3, dtype=np.float64).reshape(rows, 3) % 1000) / 250 - 2
        tensor = InferInput("input", list(matrix.shape), "FP64")
        tensor.set_data_from_numpy(matrix, binary_data=True)
        got = await client.infer(InferRequest("num", [tensor]))
        output = got.outputs[0].as_numpy()
        return {
            "input_sha256": hashlib.sha256(matrix.tobytes()).hexdigest(),
            "output_sha256": hashlib.sha256(np.ascontiguousarray(output).tobytes()).hexdigest(),
            "shape": list(output.shape),
            "datatype": got.outputs[0].datatype,
        }

    await observe(results, "grpc.raw.large", large)
    await observe(results, "grpc.version_unknown", lambda: infer(num, "raw", model_version="7"))
    await observe(results, "grpc.output_unknown", lambda: infer(num, "raw", outputs=["nope"]))
    await observe(results, "grpc.bad_shape", lambda: infer(plan["bad"], "typed"))
    await observe(results, "grpc.unknown", lambda: infer({**num, "model": "nope"}, "raw"))
    await client.close()


async def rest_checks(base: str, plan: dict[str, Any], results: dict[str, Any]) -> None:
    recorder = Recorder()
    client = InferenceRESTClient(RESTConfig(protocol="v2", transport=recorder, timeout=30))
    await observe(results, "rest.live", lambda: client.is_server_live(base))
    await observe(results, "rest.ready", lambda: client.is_server_ready(base))
    await observe(results, "rest.model_ready", lambda: client.is_model_ready(base, "num"))
    await observe(results, "rest.model_ready_unknown", lambda: client.is_model_ready(base, "nope"))

    # The REST client has no metadata calls: parse the answers with kserve's own data models.
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def parsed(path: str, model: type[Any]) -> dict[str, Any]:
            response = await http.get(path)
            response.raise_for_status()
            return dict(model.model_validate_json(response.content).model_dump())

        metadata = v2_datamodels.ModelMetadataResponse
        await observe(
            results,
            "rest.server_metadata",
            lambda: parsed("/v2", v2_datamodels.ServerMetadataResponse),
        )
        await observe(results, "rest.model_metadata", lambda: parsed("/v2/models/num", metadata))
        await observe(
            results,
            "rest.model_metadata_v1",
            lambda: parsed("/v2/models/num/versions/1", metadata),
        )
        await observe(
            results,
            "rest.model_ready_body",
            lambda: parsed("/v2/models/num/ready", v2_datamodels.ModelReadyResponse),
        )

    def wire() -> dict[str, Any]:
        """The last exchange: what the client sent, and whether kserve's InferenceResponse
        model accepts the server's JSON answer."""
        last = recorder.last
        sent = last["request_headers"]
        answer = json.loads(last["response_body"])
        try:
            v2_datamodels.InferenceResponse.model_validate(answer)
            schema = None
        except Exception as exc:
            schema = f"{type(exc).__name__}: {exc}"
        return {
            "content_type": sent.get("content-type"),
            "header_length": sent.get("inference-header-content-length"),
            "body": last["request_body"].decode("utf-8", "replace")
            if sent.get("inference-header-content-length") is None
            else None,
            "response_content_type": last["response_headers"].get("content-type"),
            "response_schema_error": schema,
            # InferResponse.from_bytes (kserve 0.21.0) drops model_version: read it here.
            "response_model_version": answer.get("model_version"),
        }

    async def infer(case: dict[str, Any], mode: str, **options: Any) -> dict[str, Any]:
        outputs = options.pop("outputs", None)
        request = InferRequest(
            case["model"],
            _inputs(case["tensors"], mode),
            request_outputs=[RequestedOutput(n) for n in outputs] if outputs else None,
            **options,
        )
        got = await client.infer(base, request, model_name=case["model"])
        return {**_response(got), "wire": wire()}

    async def infer_at(path: str, case: dict[str, Any], **options: Any) -> dict[str, Any]:
        """POST to an explicit URL (the client's documented ``is_graph_endpoint``): the REST
        client's own URL has no version segment."""
        request = InferRequest(case["model"], _inputs(case["tensors"], "json"), **options)
        got = await client.infer(f"{base}{path}", request, is_graph_endpoint=True)
        return {**got, "wire": wire()}

    cases = plan["cases"]
    for mode in ("json", "binary"):
        for name in plan[f"rest_{mode}"]:
            await observe(results, f"rest.{mode}.{name}", lambda n=name, m=mode: infer(cases[n], m))
    num = cases["FP64"]
    await observe(
        results,
        "rest.json.options",
        lambda: infer(
            num,
            "json",
            request_id="kserve-rest",
            parameters={"top_k": 3, "tag": "x", "flag": True},
            outputs=["output"],
        ),
    )
    await observe(
        results,
        "rest.versioned",
        lambda: infer_at("/v2/models/num/versions/1/infer", num, request_id="kserve-v1"),
    )
    await observe(
        results,
        "rest.version_unknown",
        lambda: infer_at("/v2/models/num/versions/7/infer", num),
    )
    await observe(results, "rest.output_unknown", lambda: infer(num, "json", outputs=["nope"]))
    await observe(results, "rest.bad_shape", lambda: infer(plan["bad"], "json"))
    await observe(results, "rest.unknown", lambda: infer({**num, "model": "nope"}, "json"))
    await client.close()


async def main() -> None:
    rest, grpc_address = sys.argv[1], sys.argv[2]
    plan = json.load(sys.stdin)
    # The clients log every failed call with a traceback; the failures here are on purpose.
    logging.getLogger("kserve.trace").setLevel(logging.CRITICAL)
    results: dict[str, Any] = {}
    await grpc_checks(grpc_address, plan, results)
    await rest_checks(rest, plan, results)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
