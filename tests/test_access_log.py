"""W3C trace context parsing and the JSON access log of the server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from shipyard import Settings, Workspace
from shipyard.core.tracecontext import continue_trace, parse_traceparent
from shipyard.server.access_log import AccessLogMiddleware, JsonFormatter
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.grpc_service import INFER_PATH, start_grpc_server
from shipyard.server.proto import inference_pb2 as pb
from shipyard.server.proto import inference_pb2_grpc as pb_grpc

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SPAN = "1111111111111111"
TRACE = "2" * 32


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param(VALID.upper(), id="upper-case"),
        pytest.param(VALID.replace("0af7", "zzzz"), id="non-hex"),
        pytest.param("00-" + "0" * 32 + "-b7ad6b7169203331-01", id="zero-trace"),
        pytest.param("00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", id="zero-parent"),
        pytest.param("ff" + VALID[2:], id="version-ff"),
        pytest.param(VALID + "-extra", id="v00-with-extra-field"),
        pytest.param(VALID[:-1], id="short"),
    ],
)
def test_invalid_traceparent_starts_a_new_trace(header: str | None) -> None:
    assert parse_traceparent(header) is None
    context = continue_trace(header, SPAN, TRACE)
    assert (context.trace_id, context.span_id, context.parent_id) == (TRACE, SPAN, None)
    assert context.sampled


def test_valid_traceparent_is_continued_as_a_child_span() -> None:
    context = continue_trace(VALID, SPAN, TRACE)
    assert context.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert context.parent_id == "b7ad6b7169203331"
    assert context.header() == f"00-0af7651916cd43dd8448eb211c80319c-{SPAN}-01"
    unsampled = continue_trace(VALID[:-2] + "00", SPAN, TRACE)
    assert not unsampled.sampled
    assert continue_trace(VALID[:-2] + "03", SPAN, TRACE).sampled  # a mask, not equality
    future = "01" + VALID[2:] + "-more"
    assert parse_traceparent(future) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 1)


def test_access_log_lines_carry_request_id_and_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    x = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2})
    ws = Workspace(Settings(home=home))
    ws.register_model("num", LogisticRegression().fit(x, [0, 1] * 3), input_example=x.head(2))
    ws.close()
    state = build_state(
        load_config({"deployments": [{"name": "num", "model": "num/1"}]}), Settings(home=home)
    )
    caplog.set_level(logging.INFO, logger="shipyard.access")
    with TestClient(AccessLogMiddleware(create_app(state))) as client:
        response = client.post(
            "/v1/models/num:predict",
            json={"instances": [{"a": 1.0, "b": 1.0}]},
            headers={"traceparent": VALID, "X-Request-ID": "req-42"},
        )
        fresh = client.get("/v2/health/live")
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    trace_id = response.headers["traceparent"].split("-")[1]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert len(fresh.headers["x-request-id"]) == 32
    records = [r for r in caplog.records if r.name == "shipyard.access"]
    assert len(records) == 2
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-42"
    assert line["trace_id"] == trace_id
    assert line["parent_id"] == "b7ad6b7169203331"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/models/num:predict", 200)
    assert line["duration_ms"] > 0


def test_grpc_calls_write_access_lines_with_request_id_and_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    x = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0) ** 2})
    ws = Workspace(Settings(home=home))
    ws.register_model("num", LogisticRegression().fit(x, [0, 1] * 3), input_example=x.head(2))
    ws.close()
    config = {"deployments": [{"name": "num", "model": "num/1"}], "access_log": True}
    state = build_state(load_config(config), Settings(home=home))
    caplog.set_level(logging.INFO, logger="shipyard.access")
    request = pb.ModelInferRequest(model_name="num")
    for name in ("a", "b"):
        tensor = request.inputs.add(name=name, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.append(1.0)

    async def scenario() -> tuple[dict[str, str], grpc.StatusCode]:
        await state.start()
        server = await start_grpc_server(state, 0)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                call = stub.ModelInfer(
                    request,
                    metadata=(("traceparent", VALID), ("x-request-id", "req-7")),
                    timeout=10,
                )
                await call
                trailing = dict(await call.trailing_metadata())
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await stub.ModelInfer(pb.ModelInferRequest(model_name="num"), timeout=10)
            return {k: str(v) for k, v in trailing.items()}, bad.value.code()
        finally:
            await server.stop(0)
            await state.stop()

    trailing, code = asyncio.run(scenario())
    state.workspace.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing["x-request-id"] == "req-7"
    assert trailing["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    records = [r for r in caplog.records if r.name == "shipyard.access"]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("GRPC", INFER_PATH, "OK"),
        ("GRPC", INFER_PATH, "INVALID_ARGUMENT"),
    ]
    assert lines[0]["request_id"] == "req-7"
    assert lines[0]["parent_id"] == "b7ad6b7169203331"
    assert len(lines[1]["request_id"]) == 32 and lines[1]["duration_ms"] > 0
