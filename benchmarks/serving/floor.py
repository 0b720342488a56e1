"""The floor of the serving benchmark: the least a Python server can do per request.

A bare ASGI app — no framework, no validation beyond what parsing needs, no metrics — that answers
the Open Inference Protocol v2 REST infer call with an ONNX Runtime session (one intra-op and one
inter-op thread) of the benchmark's model. ``run.py`` converts the model to ONNX and starts this
file under uvicorn (``--workers N``; uvloop and httptools when installed), naming the model file
and model name in the environment::

    POST /v2/models/{name}/infer
      {"inputs": [{"name": "input", "shape": [n, 30], "datatype": "FP64", "data": [...]}]}
    → {"model_name": ..., "outputs": [{"name": "probabilities", "shape": [n, 2],
                                       "datatype": "FP32", "data": [...]}]}
    GET /v2/health/live, GET /v2/health/ready → 200
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "bc")
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
JSON_HEADERS = [(b"content-type", b"application/json")]


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


SESSION = _session(os.environ["BENCH_ONNX_PATH"])
INPUT_NAME = SESSION.get_inputs()[0].name
OUTPUT_NAME = "probabilities"


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def infer(body: bytes) -> bytes:
    tensor = orjson.loads(body)["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    (proba,) = SESSION.run([OUTPUT_NAME], {INPUT_NAME: rows})
    output = {"name": OUTPUT_NAME, "shape": proba.shape, "datatype": "FP32", "data": proba.ravel()}
    return orjson.dumps(
        {"model_name": MODEL_NAME, "outputs": [output]}, option=orjson.OPT_SERIALIZE_NUMPY
    )


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # run with --lifespan off; nothing else to answer
        return
    path, method = scope["path"], scope["method"]
    if path == INFER_PATH and method == "POST":
        body = await _read_body(receive)
        try:
            answer = infer(body)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as error:
            await _respond(send, 400, orjson.dumps({"error": str(error)}))
            return
        await _respond(send, 200, answer)
    elif path in HEALTH_PATHS and method == "GET":
        await _respond(send, 200, b"{}")
    else:
        await _respond(send, 404, b'{"error": "not found"}')
