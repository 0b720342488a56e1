"""KServe's Python clients against a real ``shipyard serve``: ``InferenceRESTClient`` (protocol
v2) and ``InferenceGRPCClient``, kserve 0.21.0.

kserve pins protobuf < 7 and pandas < 3, so it lives in its own venv (``.venv-kserve``, made by
scripts/check; another interpreter via ``SHIPYARD_TEST_KSERVE_PYTHON``). The calls run in a child
process with that interpreter (tests/kserve_client_checks.py), which reports what each call
returned or raised; the tests here judge those observations against the models' own answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oip_harness import MIXED, NUMERIC, Models, register_models, serve

ROOT = Path(__file__).resolve().parent.parent
KSERVE_PYTHON = Path(
    os.environ.get("SHIPYARD_TEST_KSERVE_PYTHON", str(ROOT / ".venv-kserve" / "bin" / "python"))
)
if not os.access(KSERVE_PYTHON, os.X_OK):
    reason = f"needs kserve's venv: no interpreter at {KSERVE_PYTHON} (scripts/check makes it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

CHECKS = Path(__file__).with_name("kserve_client_checks.py")
ROWS = NUMERIC.head(5).to_numpy()
# The num model's matrix input in each datatype the clients are checked with (exact values).
MATRICES = {
    "FP64": ROWS,
    "FP32": ROWS.astype(np.float32),
    "FP16": ROWS.astype(np.float16),
    "INT8": np.round(ROWS * 3).astype(np.int8),
    "UINT16": np.round(np.abs(ROWS) * 3).astype(np.uint16),
    "INT64": np.round(ROWS * 1000).astype(np.int64),
    "BOOL": ROWS > 0,
}
MIXED_ROWS = MIXED.head(4)
# kserve refuses to send FP16 as JSON (REST) and has no typed gRPC field for it: raw only.
JSON_TYPES = [t for t in MATRICES if t != "FP16"]
BINARY_MESSAGE = "binary tensor data extension is not supported"
# An FP64 [rows, 3] input of 7.2 MB and a [rows, 2] output of 4.8 MB: both over gRPC's 4 MiB
# default. The child builds the same matrix and reports its digest, so a drift shows.
LARGE_ROWS = 300_000


def _large_matrix() -> np.ndarray[Any, Any]:
    return (np.arange(LARGE_ROWS * 3, dtype=np.float64).reshape(LARGE_ROWS, 3) % 1000) / 250 - 2


def _plan() -> dict[str, Any]:
    cases: dict[str, Any] = {
        name: {"model": "num", "tensors": {"input": {"datatype": name, "data": m.tolist()}}}
        for name, m in MATRICES.items()
    }
    cases["mixed"] = {
        "model": "mixed",
        "tensors": {
            "city": {"datatype": "BYTES", "data": MIXED_ROWS["city"].tolist()},
            "age": {"datatype": "INT64", "data": MIXED_ROWS["age"].tolist()},
            "income": {"datatype": "FP64", "data": MIXED_ROWS["income"].tolist()},
        },
    }
    cases["label"] = {"model": "label", "tensors": cases["FP64"]["tensors"]}
    return {
        "cases": cases,
        "grpc_typed": [*JSON_TYPES, "mixed", "label"],
        "grpc_raw": [*MATRICES, "mixed", "label"],
        "rest_json": [*JSON_TYPES, "mixed", "label"],
        "rest_binary": ["FP64", "FP16", "mixed"],
        "large_rows": LARGE_ROWS,
        "bad": {
            "model": "num",
            "tensors": {"input": {"datatype": "FP64", "data": [[1.0, 2.0, 3.0, 4.0]]}},
        },
    }


class Observed:
    def __init__(self, results: dict[str, Any], models: Models) -> None:
        self.results = results
        self.models = models

    def value(self, name: str) -> Any:
        result = self.results[name]
        assert "value" in result, f"{name} raised {result.get('error')}"
        return result["value"]

    def error(self, name: str, kind: str) -> dict[str, Any]:
        result = self.results[name]
        assert "error" in result, f"{name} returned {result.get('value')}"
        error: dict[str, Any] = result["error"]
        assert error["type"] == kind, error
        return error


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    home = tmp_path_factory.mktemp("kserve") / "home"
    models = register_models(home)
    deployments = [
        {"name": "num", "model": "num@production", "max_batch_rows": LARGE_ROWS},
        {"name": "mixed", "model": "mixed/1"},
        {"name": "label", "model": "label/1"},
    ]
    with serve(home, deployments, drain_s=0) as server:
        run = subprocess.run(
            [str(KSERVE_PYTHON), str(CHECKS), server.rest_url, server.grpc_address],
            input=json.dumps(_plan()),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        yield Observed(json.loads(run.stdout), models)


def _output(got: dict[str, Any]) -> np.ndarray[Any, Any]:
    output = got["output"]
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])


def _expected(observed: Observed, case: str) -> np.ndarray[Any, Any]:
    if case == "mixed":
        return np.asarray(observed.models.mixed.predict_proba(MIXED_ROWS))
    return observed.models.num_proba(MATRICES[case])


# ------------------------------------------------------------- InferenceGRPCClient
def test_grpc_health_and_model_readiness(observed: Observed) -> None:
    for check in ("live", "ready", "model_ready"):
        assert observed.value(f"grpc.{check}") is True, check
    unknown = observed.error("grpc.model_ready_unknown", "RpcError")
    assert unknown["status"] == "NOT_FOUND" and "'nope'" in unknown["message"]


def test_grpc_metadata_through_kserves_stub(observed: Observed) -> None:
    server = observed.value("grpc.server_metadata")
    assert server["name"] == "shipyard" and server["version"]
    for check in ("grpc.model_metadata", "grpc.model_metadata_v1"):
        model = observed.value(check)
        assert (model["name"], model["versions"], model["platform"]) == (
            "num",
            ["1"],
            "shipyard_sklearn",
        )
        assert model["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]
        assert model["outputs"] == [{"name": "output", "datatype": "FP64", "shape": [-1, 2]}]
    unknown = observed.error("grpc.model_metadata_unknown", "RpcError")
    assert unknown["status"] == "NOT_FOUND" and "'nope'" in unknown["message"]


@pytest.mark.parametrize(
    ("mode", "case"),
    [
        *[pytest.param("typed", c, id=f"typed-{c}") for c in [*JSON_TYPES, "mixed"]],
        *[pytest.param("raw", c, id=f"raw-{c}") for c in [*MATRICES, "mixed"]],
    ],
)
def test_grpc_infer_equals_the_models_prediction(observed: Observed, mode: str, case: str) -> None:
    # typed: lists go as InferTensorContents (fp64_contents, int_contents, bytes_contents, ...);
    # raw: numpy arrays go as raw_input_contents (the only way for FP16).
    got = observed.value(f"grpc.{mode}.{case}")
    model = "mixed" if case == "mixed" else "num"
    assert (got["model_name"], got["model_version"]) == (model, "1")
    expected = _expected(observed, case)
    assert got["outputs"] == [{"name": "output", "datatype": "FP64", "shape": list(expected.shape)}]
    np.testing.assert_array_equal(_output(got), expected)


@pytest.mark.parametrize("mode", ["typed", "raw"])
def test_grpc_bytes_output_with_empty_strings(observed: Observed, mode: str) -> None:
    got = observed.value(f"grpc.{mode}.label")
    assert got["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [5]}]
    expected = observed.models.label.predict(NUMERIC.head(5)).tolist()
    assert "" in expected and got["output"]["data"] == expected


@pytest.mark.parametrize("mode", ["typed", "raw"])
def test_grpc_request_id_version_outputs_and_parameters(observed: Observed, mode: str) -> None:
    # InferRequest(request_id=..., model_version="1", parameters=int/str/bool, one output).
    got = observed.value(f"grpc.{mode}.options")
    assert (got["id"], got["model_name"], got["model_version"]) == (f"kserve-{mode}", "num", "1")
    np.testing.assert_array_equal(_output(got), observed.models.num_proba(ROWS))


def test_grpc_messages_over_4_mib_each_way(observed: Observed) -> None:
    got = observed.value("grpc.raw.large")
    matrix = _large_matrix()
    assert got["input_sha256"] == hashlib.sha256(matrix.tobytes()).hexdigest()
    expected = np.ascontiguousarray(observed.models.num_proba(matrix), dtype=np.float64)
    assert (got["shape"], got["datatype"]) == ([LARGE_ROWS, 2], "FP64")
    assert got["output_sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()


def test_grpc_errors_carry_the_servers_status_and_message(observed: Observed) -> None:
    bad = observed.error("grpc.bad_shape", "RpcError")
    assert bad["status"] == "INVALID_ARGUMENT" and "expected [rows, 3]" in bad["message"]
    unknown = observed.error("grpc.unknown", "RpcError")
    assert unknown["status"] == "NOT_FOUND" and "'nope'" in unknown["message"]
    version = observed.error("grpc.version_unknown", "RpcError")
    assert version["status"] == "NOT_FOUND" and "no version 7" in version["message"]
    output = observed.error("grpc.output_unknown", "RpcError")
    assert output["status"] == "INVALID_ARGUMENT" and "'nope'" in output["message"]


# ------------------------------------------------------------- InferenceRESTClient
def test_rest_health_and_model_readiness(observed: Observed) -> None:
    # is_server_live/ready read the "live"/"ready" keys of the body; is_model_ready the status.
    for check in ("live", "ready", "model_ready"):
        assert observed.value(f"rest.{check}") is True, check
    assert observed.value("rest.model_ready_unknown") is False
    assert observed.value("rest.model_ready_body") == {"name": "num", "ready": True}


def test_rest_metadata_parses_with_kserves_data_models(observed: Observed) -> None:
    server = observed.value("rest.server_metadata")
    assert server["name"] == "shipyard" and server["extensions"] == []
    for check in ("rest.model_metadata", "rest.model_metadata_v1"):
        model = observed.value(check)
        assert (model["name"], model["versions"], model["platform"]) == (
            "num",
            ["1"],
            "shipyard_sklearn",
        )
        assert model["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]


@pytest.mark.parametrize("case", [*JSON_TYPES, "mixed"])
def test_rest_json_infer_equals_the_models_prediction(observed: Observed, case: str) -> None:
    got = observed.value(f"rest.json.{case}")
    wire = got["wire"]
    # Plain JSON went out (no binary header); kserve's InferenceResponse model accepts the answer.
    assert (wire["content_type"], wire["header_length"]) == ("application/json", None)
    assert wire["response_content_type"] == "application/json"
    assert wire["response_schema_error"] is None
    assert wire["response_model_version"] == "1"
    sent = json.loads(wire["body"])
    assert sent["model_name"] == got["model_name"]
    # kserve makes up a uuid id when none is given; the server echoes it.
    assert sent["id"] and got["id"] == sent["id"]
    expected = _expected(observed, case)
    assert got["outputs"] == [{"name": "output", "datatype": "FP64", "shape": list(expected.shape)}]
    np.testing.assert_array_equal(_output(got), expected)


def test_rest_json_bytes_output_with_empty_strings(observed: Observed) -> None:
    got = observed.value("rest.json.label")
    expected = observed.models.label.predict(NUMERIC.head(5)).tolist()
    assert got["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [5]}]
    assert "" in expected and got["output"]["data"] == expected


def test_rest_request_id_outputs_and_parameters(observed: Observed) -> None:
    got = observed.value("rest.json.options")
    sent = json.loads(got["wire"]["body"])
    assert sent["parameters"] == {"top_k": 3, "tag": "x", "flag": True}
    assert sent["outputs"] == [{"name": "output"}]
    assert got["id"] == "kserve-rest"
    np.testing.assert_array_equal(_output(got), observed.models.num_proba(ROWS))


def test_rest_version_specific_infer(observed: Observed) -> None:
    # The client builds only /v2/models/{m}/infer; is_graph_endpoint posts to the URL given.
    got = observed.value("rest.versioned")
    assert (got["model_name"], got["model_version"], got["id"]) == ("num", "1", "kserve-v1")
    assert got["wire"]["response_schema_error"] is None
    (output,) = got["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP64", [5, 2])
    np.testing.assert_array_equal(
        np.asarray(output["data"]).reshape(5, 2), observed.models.num_proba(ROWS)
    )
    error = observed.error("rest.version_unknown", "HTTPStatusError")
    assert error["status"] == 404 and "no version 7" in error["message"]


@pytest.mark.parametrize("case", ["FP64", "FP16", "mixed"])
def test_rest_binary_inputs_are_a_clear_400(observed: Observed, case: str) -> None:
    # kserve's default (set_data_from_numpy with binary_data=True), and its only way to send
    # FP16, is the binary extension, which shipyard does not implement (protocol doc §3).
    error = observed.error(f"rest.binary.{case}", "HTTPStatusError")
    assert error["status"] == 400 and BINARY_MESSAGE in error["message"]
    assert error["content_type"] == "application/json"
    assert list(json.loads(error["body"])) == ["error"]


def test_rest_errors_surface_the_servers_status_and_message(observed: Observed) -> None:
    # kserve puts the body's "error" in the exception text only for application/json answers.
    bad = observed.error("rest.bad_shape", "HTTPStatusError")
    assert bad["status"] == 400 and "expected [rows, 3]" in bad["message"]
    unknown = observed.error("rest.unknown", "HTTPStatusError")
    assert unknown["status"] == 404 and "'nope'" in unknown["message"]
    output = observed.error("rest.output_unknown", "HTTPStatusError")
    assert output["status"] == 400 and "'nope'" in output["message"]
