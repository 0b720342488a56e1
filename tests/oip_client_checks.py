"""Client-library calls against a running server, run as a child process by test_oip_clients.py.

tritonclient's generated ``service_pb2`` and shipyard's ``inference_pb2`` register the same
protobuf names, so they cannot live in one process (protocol doc §4.9): the test process has
ours, this script has tritonclient's and never imports shipyard.

Usage: ``python oip_client_checks.py REST_HOST:PORT GRPC_HOST:PORT < plan.json``. The plan gives
the request data; stdout gets one JSON object, check name → ``{"value": ...}`` or
``{"error": {"type", "status", "message", "text"}}``. Only observations are made here; the test
decides what is right.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import triton_to_np_dtype


def observe(results: dict[str, Any], name: str, call: Callable[[], Any]) -> None:
    try:
        results[name] = {"value": call()}
    except Exception as exc:
        status = getattr(exc, "status", None)
        message = getattr(exc, "message", None)
        results[name] = {
            "error": {
                "type": type(exc).__name__,
                "status": status() if callable(status) else None,
                "message": message() if callable(message) else None,
                "text": str(exc),
            }
        }


def _plain(array: Any) -> Any:
    flat = [v.decode() if isinstance(v, bytes) else v for v in np.asarray(array).ravel().tolist()]
    return {"data": flat, "shape": list(np.shape(array))}


def _inputs(module: Any, tensors: dict[str, Any], binary: bool | None) -> list[Any]:
    out = []
    for name, spec in tensors.items():
        datatype = spec["datatype"]
        values = spec["data"]
        if datatype == "BYTES":
            array = np.array([v.encode() for v in values], dtype=np.object_)
        else:
            array = np.array(values, dtype=triton_to_np_dtype(datatype))
        tensor = module.InferInput(name, list(array.shape), datatype)
        if binary is None:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


def grpc_checks(address: str, plan: dict[str, Any], results: dict[str, Any]) -> None:
    client = grpcclient.InferenceServerClient(address)
    observe(results, "grpc.live", client.is_server_live)
    observe(results, "grpc.ready", client.is_server_ready)
    observe(results, "grpc.model_ready", lambda: client.is_model_ready("num"))
    observe(results, "grpc.model_ready_v1", lambda: client.is_model_ready("num", "1"))
    observe(results, "grpc.model_ready_v7", lambda: client.is_model_ready("num", "7"))
    observe(results, "grpc.model_ready_unknown", lambda: client.is_model_ready("nope"))
    observe(results, "grpc.server_metadata", lambda: client.get_server_metadata(as_json=True))
    observe(results, "grpc.model_metadata", lambda: client.get_model_metadata("num", as_json=True))

    def infer(model: str, tensors: dict[str, Any], **options: Any) -> dict[str, Any]:
        result = client.infer(model, _inputs(grpcclient, tensors, None), **options)
        response = result.get_response()
        return {
            "output": _plain(result.as_numpy("output")),
            "outputs": [
                {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
                for o in response.outputs
            ],
            "raw_output_contents": len(response.raw_output_contents),
            "typed_contents": [bool(o.contents.ListFields()) for o in response.outputs],
            "model_name": response.model_name,
            "model_version": response.model_version,
            "id": response.id,
        }

    for name, tensors in plan["infer"].items():
        observe(results, f"grpc.infer.{name}", lambda t=tensors, n=name: infer(plan["model"][n], t))
    num = plan["infer"]["FP64"]
    observe(
        results,
        "grpc.infer.options",
        lambda: infer("num", num, request_id="r-1", priority=1, parameters={"top_k": 3, "m": "x"}),
    )
    observe(results, "grpc.infer.bad", lambda: infer("num", plan["bad"]))
    observe(results, "grpc.infer.unknown", lambda: infer("nope", num))
    client.close()


def http_checks(address: str, plan: dict[str, Any], results: dict[str, Any]) -> None:
    client = httpclient.InferenceServerClient(address)
    observe(results, "http.live", client.is_server_live)
    observe(results, "http.ready", client.is_server_ready)
    observe(results, "http.model_ready", lambda: client.is_model_ready("num"))
    observe(results, "http.model_ready_v1", lambda: client.is_model_ready("num", "1"))
    observe(results, "http.model_ready_unknown", lambda: client.is_model_ready("nope"))
    observe(results, "http.server_metadata", client.get_server_metadata)
    observe(results, "http.model_metadata", lambda: client.get_model_metadata("num"))

    def infer(model: str, tensors: dict[str, Any], **options: Any) -> dict[str, Any]:
        outputs = [httpclient.InferRequestedOutput("output", binary_data=False)]
        inputs = _inputs(httpclient, tensors, False)
        result = client.infer(model, inputs, outputs=outputs, **options)
        response = result.get_response()
        return {
            "output": _plain(result.as_numpy("output")),
            "model_name": response["model_name"],
            "model_version": response.get("model_version"),
            "id": response.get("id"),
        }

    for name, tensors in plan["infer"].items():
        observe(results, f"http.infer.{name}", lambda t=tensors, n=name: infer(plan["model"][n], t))
    num = plan["infer"]["FP64"]
    observe(results, "http.infer.options", lambda: infer("num", num, request_id="r-2"))
    observe(results, "http.infer.bad", lambda: infer("num", plan["bad"]))
    observe(
        results,
        "http.infer.binary_default",
        lambda: client.infer("num", _inputs(httpclient, num, None)).get_response(),
    )
    client.close()


def main() -> None:
    rest, grpc_address = sys.argv[1], sys.argv[2]
    plan = json.load(sys.stdin)
    results: dict[str, Any] = {}
    grpc_checks(grpc_address, plan, results)
    http_checks(rest, plan, results)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
