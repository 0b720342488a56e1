"""The gRPC front end against a real ``shipyard serve`` process, with our generated stubs.

Open Inference Protocol conformance (docs: shared/protocol/open-inference-protocol.md §4, §6):
health and metadata RPCs, infer with typed and raw contents for every datatype, status codes,
message size, parameters, ``grpc.health.v1``, metrics, drain on SIGTERM, several workers.
Client libraries (tritonclient) are in test_oip_clients.py.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oip_harness import MIXED, NUMERIC, Models, Server, register_models, serve
from shipyard import Settings, Workspace
from shipyard.server.app import build_state
from shipyard.server.config import load_config
from shipyard.server.grpc_service import start_grpc_server
from shipyard.server.proto import inference_pb2 as pb
from shipyard.server.proto import inference_pb2_grpc as pb_grpc

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
Code = grpc.StatusCode


class Served:
    def __init__(self, server: Server, models: Models) -> None:
        self.server = server
        self.models = models
        self.channel = grpc.insecure_channel(server.grpc_address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("grpc") / "home"
    models = register_models(home)
    deployments = [
        {"name": "num", "model": "num@production", "max_batch_rows": 1_000_000},
        {"name": "mixed", "model": "mixed/1"},
        {"name": "label", "model": "label/1"},
    ]
    with serve(home, deployments, drain_s=0) as server:
        served = Served(server, models)
        yield served
        served.channel.close()


def _error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _assert_status(call: Callable[[], Any], code: grpc.StatusCode, *fragments: str) -> None:
    error = _error(call)
    assert error.code() == code, error.details()
    assert error.details()
    for fragment in fragments:
        assert fragment in error.details()


# Independent of shipyard's codec: numpy's little-endian bytes and struct length prefixes.
def _raw(array: np.ndarray[Any, Any]) -> bytes:
    if array.dtype == np.bool_:
        return array.astype(np.uint8).tobytes()
    if array.dtype == object:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.ravel())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _unraw_bytes(data: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        out.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


def _output(response: pb.ModelInferResponse, dtype: str = "<f8") -> np.ndarray[Any, Any]:
    (output,) = response.outputs
    assert len(response.raw_output_contents) == 1
    assert not output.contents.ListFields()
    return np.frombuffer(response.raw_output_contents[0], dtype=dtype).reshape(output.shape)


def _matrix_request(rows: np.ndarray[Any, Any], datatype: str, **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name="num", **fields)
    request.inputs.add(name="input", datatype=datatype, shape=rows.shape)
    return request


# Values the num model (3 numeric columns) accepts in each datatype, and their typed field.
DATATYPES = {
    "BOOL": (np.bool_, "bool_contents"),
    "UINT8": (np.uint8, "uint_contents"),
    "UINT16": (np.uint16, "uint_contents"),
    "UINT32": (np.uint32, "uint_contents"),
    "UINT64": (np.uint64, "uint64_contents"),
    "INT8": (np.int8, "int_contents"),
    "INT16": (np.int16, "int_contents"),
    "INT32": (np.int32, "int_contents"),
    "INT64": (np.int64, "int64_contents"),
    "FP16": (np.float16, None),
    "FP32": (np.float32, "fp32_contents"),
    "FP64": (np.float64, "fp64_contents"),
}


def _rows(datatype: str) -> np.ndarray[Any, Any]:
    dtype = np.dtype(DATATYPES[datatype][0])
    base = NUMERIC.head(5).to_numpy()
    if dtype.kind == "b":
        return base > 0
    if dtype.kind == "u":
        return np.round(np.abs(base) * 3).astype(dtype)
    if dtype.kind == "i":
        return np.round(base * 3).astype(dtype)
    return base.astype(dtype)


# ------------------------------------------------------------------ health
def test_server_and_model_readiness(served: Served) -> None:
    stub = served.stub
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="num")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="num", version="1")).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="num", version="7")).ready is False
    _assert_status(
        lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope")), Code.NOT_FOUND, "'nope'"
    )


def test_grpc_health_check_and_watch(served: Served) -> None:
    for service in ("", "inference.GRPCInferenceService", "readiness", "liveness"):
        check = served.health.Check(health_pb2.HealthCheckRequest(service=service))
        assert check.status == SERVING, service
    _assert_status(
        lambda: served.health.Check(health_pb2.HealthCheckRequest(service="other")),
        Code.NOT_FOUND,
        "'other'",
    )
    watch = served.health.Watch(health_pb2.HealthCheckRequest(service=""))
    assert next(watch).status == SERVING
    watch.cancel()


# ---------------------------------------------------------------- metadata
def test_server_and_model_metadata(served: Served) -> None:
    stub = served.stub
    server = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "shipyard" and server.version and list(server.extensions) == []
    for version in ("", "1"):
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="num", version=version))
        assert (meta.name, list(meta.versions), meta.platform) == ("num", ["1"], "shipyard_sklearn")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("input", "FP64", [-1, 3])
        ]
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
            ("output", "FP64", [-1, 2])
        ]
        assert not meta.properties
    mixed = stub.ModelMetadata(pb.ModelMetadataRequest(name="mixed"))
    assert [(t.name, t.datatype, list(t.shape)) for t in mixed.inputs] == [
        ("city", "BYTES", [-1]),
        ("age", "INT64", [-1]),
        ("income", "FP64", [-1]),
    ]
    _assert_status(
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")), Code.NOT_FOUND, "nope"
    )
    _assert_status(
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="num", version="7")),
        Code.NOT_FOUND,
        "version 7",
    )


# ------------------------------------------------------------------- infer
@pytest.mark.parametrize("datatype", [d for d, (_, f) in DATATYPES.items() if f is not None])
def test_infer_with_typed_contents(served: Served, datatype: str) -> None:
    rows = _rows(datatype)
    request = _matrix_request(rows, datatype, id="typed-1")
    getattr(request.inputs[0].contents, DATATYPES[datatype][1]).extend(rows.ravel().tolist())
    response = served.stub.ModelInfer(request)
    assert (response.model_name, response.model_version, response.id) == ("num", "1", "typed-1")
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output", "FP64", [5, 2])
    np.testing.assert_array_equal(_output(response), served.models.num_proba(rows))


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_infer_with_raw_contents(served: Served, datatype: str) -> None:
    rows = _rows(datatype)
    request = _matrix_request(rows, datatype)
    request.raw_input_contents.append(_raw(rows))
    response = served.stub.ModelInfer(request)
    assert response.id == "" and response.model_version == "1"
    np.testing.assert_array_equal(_output(response), served.models.num_proba(rows))


def test_infer_per_column_inputs_typed_and_raw_agree(served: Served) -> None:
    rows = MIXED.head(5)
    city = np.array([c.encode() for c in rows["city"]], dtype=object)
    typed = pb.ModelInferRequest(model_name="mixed", model_version="1")
    typed.inputs.add(name="city", datatype="BYTES", shape=[5]).contents.bytes_contents.extend(city)
    age = typed.inputs.add(name="age", datatype="INT64", shape=[5, 1])
    age.contents.int64_contents.extend(rows["age"].tolist())
    income = typed.inputs.add(name="income", datatype="FP64", shape=[5])
    income.contents.fp64_contents.extend(rows["income"].tolist())
    raw = pb.ModelInferRequest(model_name="mixed")
    for name, datatype, values in [
        ("income", "FP64", rows["income"].to_numpy()),
        ("city", "BYTES", city),
        ("age", "INT64", rows["age"].to_numpy()),
    ]:
        raw.inputs.add(name=name, datatype=datatype, shape=[5])
        raw.raw_input_contents.append(_raw(values))
    expected = served.models.mixed.predict_proba(rows)
    for request in (typed, raw):
        response = served.stub.ModelInfer(request)
        assert response.model_version == "1"
        np.testing.assert_array_equal(_output(response), expected)


def test_bytes_output_is_raw_with_length_prefixes(served: Served) -> None:
    rows = NUMERIC.head(6).to_numpy()
    request = pb.ModelInferRequest(model_name="label")
    request.inputs.add(name="input", datatype="FP64", shape=rows.shape)
    request.raw_input_contents.append(_raw(rows))
    response = served.stub.ModelInfer(request)
    (output,) = response.outputs
    assert (output.datatype, list(output.shape)) == ("BYTES", [6])
    expected = served.models.label.predict(NUMERIC.head(6))
    assert b"" in _unraw_bytes(response.raw_output_contents[0])  # empty strings survive
    assert _unraw_bytes(response.raw_output_contents[0]) == [s.encode() for s in expected]


def test_requested_outputs_and_parameters_of_every_kind(served: Served) -> None:
    rows = NUMERIC.head(2).to_numpy()
    request = _matrix_request(rows, "FP64")
    request.raw_input_contents.append(_raw(rows))
    request.outputs.add(name="output")
    request.parameters["priority"].uint64_param = 1  # tritonclient's priority
    request.parameters["temperature"].double_param = 0.5
    request.parameters["timeout"].int64_param = 1000
    request.parameters["flag"].bool_param = True
    request.parameters["note"].string_param = "x"
    request.inputs[0].parameters["binary_data_size"].int64_param = 48
    response = served.stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["output"]
    np.testing.assert_array_equal(_output(response), served.models.num_proba(rows))


def test_a_request_over_4_mib_succeeds(served: Served) -> None:
    rows = np.random.default_rng(1).normal(size=(8 * 1024 * 1024 // 24 + 1, 3))
    request = _matrix_request(rows, "FP64")
    request.raw_input_contents.append(_raw(rows))
    assert request.ByteSize() > 8 * 1024 * 1024
    response = served.stub.ModelInfer(request)
    np.testing.assert_allclose(_output(response), served.models.num_proba(rows), rtol=1e-12)


# ------------------------------------------------------------------ errors
def _typed(
    datatype: str, shape: list[int], field: str, values: list[Any], name: str = "input"
) -> Any:
    request = pb.ModelInferRequest(model_name="num")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


def _with(request: Any, change: Callable[[Any], Any]) -> Any:
    change(request)
    return request


def _mixed_raw(city: list[bytes]) -> Any:
    request = pb.ModelInferRequest(model_name="mixed")
    n = len(city)
    for name, datatype, values in [
        ("city", "BYTES", np.array(city, dtype=object)),
        ("age", "INT64", np.full(n, 30, dtype=np.int64)),
        ("income", "FP64", np.full(n, 50.0)),
    ]:
        request.inputs.add(name=name, datatype=datatype, shape=[n])
        request.raw_input_contents.append(_raw(values))
    return request


def _shared_memory() -> Any:
    request = _typed("FP64", [1, 3], "fp64_contents", [0.1, 0.2, 0.3])
    request.inputs[0].parameters["shared_memory_region"].string_param = "region0"
    return request


def _sequence() -> Any:
    request = _typed("FP64", [1, 3], "fp64_contents", [0.1, 0.2, 0.3])
    request.parameters["sequence_id"].int64_param = 7
    return request


ONE_ROW = [0.1, 0.2, 0.3]
INVALID = [
    pytest.param(
        _with(
            _typed("FP64", [1, 3], "fp64_contents", ONE_ROW),
            lambda r: r.raw_input_contents.append(_raw(np.zeros(3))),
        ),
        ("contents", "raw_input_contents"),
        id="contents-and-raw",
    ),
    pytest.param(
        _with(
            _matrix_request(np.zeros((1, 3)), "FP64"),
            lambda r: r.raw_input_contents.append(b"\0" * 16),
        ),
        ("16 bytes", "needs 24"),
        id="raw-size-mismatch",
    ),
    pytest.param(
        _with(
            _matrix_request(np.zeros((1, 3)), "FP64"),
            lambda r: r.raw_input_contents.extend([b"\0" * 24, b"\0" * 24]),
        ),
        ("2 entries for 1 inputs",),
        id="raw-count-mismatch",
    ),
    pytest.param(_mixed_raw([b"paris", b"\xff"]), ("not UTF-8",), id="bytes-not-utf8"),
    pytest.param(
        _with(
            _mixed_raw([b"paris"]),
            lambda r: r.raw_input_contents.__setitem__(0, b"\x09\0\0\0paris"),
        ),
        ("declares 9 bytes",),
        id="bytes-length-overrun",
    ),
    pytest.param(
        _typed("FP64", [1, 3], "fp64_contents", [1.0, 2.0]),
        ("2 element(s)", "[1, 3]"),
        id="typed-count-mismatch",
    ),
    pytest.param(
        _typed("FP64", [1, 3], "fp32_contents", ONE_ROW), ("fp64_contents",), id="wrong-field"
    ),
    pytest.param(
        _typed("FP16", [1, 3], "fp32_contents", ONE_ROW), ("raw_input_contents",), id="fp16-typed"
    ),
    pytest.param(
        _typed("INT8", [1, 3], "int_contents", [1, 2, 300]), ("out of range",), id="int8-range"
    ),
    pytest.param(_typed("BF16", [1, 3], "fp32_contents", ONE_ROW), ("BF16",), id="bf16"),
    pytest.param(_typed("FP128", [1, 3], "fp64_contents", ONE_ROW), ("FP128",), id="datatype"),
    pytest.param(
        _typed("FP64", [-1, 3], "fp64_contents", ONE_ROW), ("non-negative",), id="negative-shape"
    ),
    pytest.param(
        _typed("FP64", [1, 4], "fp64_contents", [*ONE_ROW, 4.0]), ("[rows, 3]",), id="wrong-width"
    ),
    pytest.param(
        _typed("FP64", [1], "fp64_contents", [1.0], name="a"), ("missing column",), id="input-name"
    ),
    pytest.param(pb.ModelInferRequest(model_name="num"), ("'inputs'",), id="no-inputs"),
    pytest.param(
        _with(
            _typed("FP64", [1, 3], "fp64_contents", ONE_ROW),
            lambda r: r.inputs.append(r.inputs[0]),
        ),
        ("unique",),
        id="duplicate-inputs",
    ),
    pytest.param(
        _with(_typed("FP64", [1, 3], "fp64_contents", ONE_ROW), lambda r: r.outputs.add(name="x")),
        ("unknown output 'x'",),
        id="unknown-output",
    ),
    pytest.param(_shared_memory(), ("shared_memory_region",), id="shared-memory"),
    pytest.param(_sequence(), ("sequence",), id="sequence-id"),
]


@pytest.mark.parametrize(("request_", "fragments"), INVALID)
def test_bad_requests_are_invalid_argument(
    served: Served, request_: Any, fragments: tuple[str, ...]
) -> None:
    _assert_status(lambda: served.stub.ModelInfer(request_), Code.INVALID_ARGUMENT, *fragments)


def test_unknown_model_or_version_is_not_found(served: Served) -> None:
    request = _typed("FP64", [1, 3], "fp64_contents", ONE_ROW)
    request.model_name = "nope"
    _assert_status(lambda: served.stub.ModelInfer(request), Code.NOT_FOUND, "'nope'", "num")
    request.model_name, request.model_version = "num", "7"
    _assert_status(lambda: served.stub.ModelInfer(request), Code.NOT_FOUND, "no version 7")


def test_a_model_failure_is_internal_with_its_message(served: Served) -> None:
    request = _mixed_raw([b"atlantis"])  # a category the model never saw: it raises
    _assert_status(
        lambda: served.stub.ModelInfer(request), Code.INTERNAL, "'mixed' version 1 failed"
    )


def test_unknown_methods_are_unimplemented(served: Served) -> None:
    for method in ("ModelStreamInfer", "RepositoryIndex"):
        call = served.channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        _assert_status(lambda call=call: call(b""), Code.UNIMPLEMENTED)
    other = served.channel.unary_unary("/other.Service/Call")
    assert _error(lambda: other(b"")).code() == Code.UNIMPLEMENTED


# ----------------------------------------------------------------- metrics
def test_grpc_requests_are_counted_by_status_name(served: Served) -> None:
    rows = NUMERIC.head(1).to_numpy()
    ok = _matrix_request(rows, "FP64")
    ok.raw_input_contents.append(_raw(rows))
    served.stub.ModelInfer(ok)
    _error(lambda: served.stub.ModelInfer(_typed("FP64", [1, 3], "fp32_contents", ONE_ROW)))
    text = httpx.get(f"{served.server.rest_url}/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for code in ("OK", "INVALID_ARGUMENT"):
        key = f'shipyard_requests_total{{code="{code}",model="num",protocol="grpc",version="1"}}'
        assert samples[key] >= 1, key
    count = 'shipyard_request_duration_seconds_count{model="num",protocol="grpc"}'
    assert samples[count] >= 2


# ---------------------------------------------------------------- lifecycle
def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.05)


def test_readiness_follows_model_loading_and_draining(tmp_path: Path) -> None:
    home = tmp_path / "home"
    models = register_models(home)
    deployments = [
        {"name": "num", "model": "num/1"},
        {"name": "late", "model": "late@production"},  # not registered yet
    ]
    token = [("authorization", "Bearer t0ken")]
    env = {"SHIPYARD_INFERENCE_TOKEN": "t0ken"}
    timing = {"reload_interval_s": 0.2, "drain_s": 2.0}
    with (
        serve(home, deployments, wait_ready=False, env=env, **timing) as server,
        grpc.insecure_channel(server.grpc_address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        def status() -> Any:
            return health.Check(health_pb2.HealthCheckRequest()).status

        assert status() == NOT_SERVING
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert stub.ServerLive(pb.ServerLiveRequest()).live is True
        assert stub.ModelReady(pb.ModelReadyRequest(name="late")).ready is False
        assert stub.ModelReady(pb.ModelReadyRequest(name="num")).ready is True
        late = _typed("FP64", [1, 3], "fp64_contents", ONE_ROW)
        late.model_name = "late"
        _assert_status(lambda: stub.ModelInfer(late, metadata=token), Code.UNAVAILABLE, "'late'")
        _assert_status(
            lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="late")), Code.UNAVAILABLE
        )
        num = _typed("FP64", [1, 3], "fp64_contents", ONE_ROW)
        _assert_status(lambda: stub.ModelInfer(num), Code.UNAUTHENTICATED, "bearer token")
        assert stub.ModelInfer(num, metadata=token).model_version == "1"

        workspace = Workspace(Settings(home=home))
        workspace.register_model("late", models.num, input_example=NUMERIC.head(3))
        workspace.registry.set_alias("late", "production", 1)
        workspace.close()
        _wait_for(lambda: status() == SERVING, 30, "SERVING after the model loaded")
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
        assert stub.ModelInfer(late, metadata=token).model_name == "late"

        server.process.send_signal(signal.SIGTERM)
        _wait_for(lambda: status() == NOT_SERVING, 5, "NOT_SERVING after SIGTERM")
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert stub.ServerLive(pb.ServerLiveRequest()).live is True
        assert stub.ModelInfer(num, metadata=token).model_version == "1"  # still served
        assert server.process.wait(timeout=30) == 0


def _listeners(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net")
def test_every_worker_process_listens_on_the_grpc_port(tmp_path: Path) -> None:
    home = tmp_path / "home"
    models = register_models(home)
    with serve(home, [{"name": "num", "model": "num/1"}], workers=2, drain_s=0) as server:
        port = int(server.grpc_address.rsplit(":", 1)[1])
        # Ready answers once one worker is up; the other may still be loading its models.
        _wait_for(lambda: _listeners(port) == 2, 30, "two listeners on the gRPC port")
        rows = NUMERIC.head(3).to_numpy()
        for _ in range(4):  # fresh connections, spread over the workers by the kernel
            with grpc.insecure_channel(server.grpc_address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                request = _matrix_request(rows, "FP64")
                request.raw_input_contents.append(_raw(rows))
                np.testing.assert_array_equal(
                    _output(stub.ModelInfer(request)), models.num_proba(rows)
                )


def test_a_single_worker_does_not_share_a_busy_port(tmp_path: Path) -> None:
    """SO_REUSEPORT only with several workers: one worker must not silently split traffic
    with whatever already listens on its port."""
    with socket.socket(socket.AF_INET6) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("::", 0))
        other.listen()
        port = other.getsockname()[1]
        for workers, binds in ((1, False), (2, True)):
            config = {"deployments": [{"name": "num", "model": "num/1"}], "workers": workers}
            state = build_state(load_config(config), Settings(home=tmp_path / "home"))

            async def start(state: Any = state) -> None:
                server = await start_grpc_server(state, port)
                await server.stop(0)

            if binds:
                asyncio.run(start())
            else:
                with pytest.raises(RuntimeError, match="cannot listen for gRPC"):
                    asyncio.run(start())
            state.workspace.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_tls_with_the_rest_ports_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl, "-keyout", str(key), "-out", str(cert), *names], check=True, capture_output=True
    )
    config = {
        "deployments": [{"name": "num", "model": "num/1"}],
        "tls_cert_file": str(cert),
        "tls_key_file": str(key),
    }
    state = build_state(load_config(config), Settings(home=tmp_path / "home"))

    async def scenario() -> tuple[bool, grpc.StatusCode]:
        server = await start_grpc_server(state, 0)
        address = f"127.0.0.1:{server.port}"
        try:
            trust = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(address, trust) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                live = await stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as plain:
                    await stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
            return live.live, plain.value.code()
        finally:
            await server.stop(0)

    assert asyncio.run(scenario()) == (True, Code.UNAVAILABLE)
    state.workspace.close()
