"""Real client libraries against a real ``shipyard serve``: tritonclient.grpc and .http.

The calls run in a child process (tests/oip_client_checks.py): tritonclient's generated protobuf
modules clash with shipyard's in one process (protocol doc §4.9). It runs once per module and
reports what each call returned or raised; the tests here judge those observations.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oip_harness import MIXED, NUMERIC, Models, register_models, serve

# Looked up, never imported here: importing tritonclient.grpc next to our stubs would fail.
_MISSING = [p for p in ("tritonclient", "geventhttpclient") if importlib.util.find_spec(p) is None]
if _MISSING:
    reason = f"needs tritonclient[grpc,http]; missing {', '.join(_MISSING)}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

CHECKS = Path(__file__).with_name("oip_client_checks.py")
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


def _plan() -> dict[str, Any]:
    infer: dict[str, Any] = {
        name: {"input": {"datatype": name, "data": matrix.tolist()}}
        for name, matrix in MATRICES.items()
    }
    infer["mixed"] = {
        "city": {"datatype": "BYTES", "data": MIXED_ROWS["city"].tolist()},
        "age": {"datatype": "INT64", "data": MIXED_ROWS["age"].tolist()},
        "income": {"datatype": "FP64", "data": MIXED_ROWS["income"].tolist()},
    }
    infer["label"] = {"input": {"datatype": "FP64", "data": ROWS.tolist()}}
    return {
        "infer": infer,
        "model": {**dict.fromkeys(MATRICES, "num"), "mixed": "mixed", "label": "label"},
        "bad": {"input": {"datatype": "FP64", "data": [[1.0, 2.0, 3.0, 4.0]]}},
    }


class Observed:
    def __init__(self, results: dict[str, Any], models: Models) -> None:
        self.results = results
        self.models = models

    def value(self, name: str) -> Any:
        result = self.results[name]
        assert "value" in result, f"{name} raised {result.get('error')}"
        return result["value"]

    def error(self, name: str) -> dict[str, Any]:
        result = self.results[name]
        assert "error" in result, f"{name} returned {result.get('value')}"
        error: dict[str, Any] = result["error"]
        assert error["type"] == "InferenceServerException", error
        return error


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    home = tmp_path_factory.mktemp("clients") / "home"
    models = register_models(home)
    deployments = [
        {"name": "num", "model": "num@production"},
        {"name": "mixed", "model": "mixed/1"},
        {"name": "label", "model": "label/1"},
    ]
    with serve(home, deployments, drain_s=0) as server:
        rest = server.rest_url.removeprefix("http://")
        run = subprocess.run(
            [sys.executable, str(CHECKS), rest, server.grpc_address],
            input=json.dumps(_plan()),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        yield Observed(json.loads(run.stdout), models)


def _array(output: dict[str, Any], dtype: Any = np.float64) -> np.ndarray[Any, Any]:
    return np.asarray(output["data"], dtype=dtype).reshape(output["shape"])


# ----------------------------------------------------------- tritonclient.grpc
def test_grpc_health_and_readiness(observed: Observed) -> None:
    for check in ("live", "ready", "model_ready", "model_ready_v1"):
        assert observed.value(f"grpc.{check}") is True, check
    assert observed.value("grpc.model_ready_v7") is False
    error = observed.error("grpc.model_ready_unknown")
    assert error["status"] == "StatusCode.NOT_FOUND" and "'nope'" in error["message"]


def test_grpc_metadata(observed: Observed) -> None:
    server = observed.value("grpc.server_metadata")
    assert server["name"] == "shipyard" and server["version"]
    model = observed.value("grpc.model_metadata")
    assert (model["name"], model["versions"], model["platform"]) == (
        "num",
        ["1"],
        "shipyard_sklearn",
    )
    assert model["inputs"] == [{"name": "input", "datatype": "FP64", "shape": ["-1", "3"]}]
    assert model["outputs"] == [{"name": "output", "datatype": "FP64", "shape": ["-1", "2"]}]


@pytest.mark.parametrize("datatype", list(MATRICES))
def test_grpc_infer_raw_inputs_of_each_datatype(observed: Observed, datatype: str) -> None:
    got = observed.value(f"grpc.infer.{datatype}")
    assert got["outputs"] == [{"name": "output", "datatype": "FP64", "shape": [5, 2]}]
    assert got["raw_output_contents"] == 1 and got["typed_contents"] == [False]
    assert (got["model_name"], got["model_version"]) == ("num", "1")
    expected = observed.models.num_proba(MATRICES[datatype])
    np.testing.assert_array_equal(_array(got["output"]), expected)


def test_grpc_infer_bytes_and_int64_inputs(observed: Observed) -> None:
    got = observed.value("grpc.infer.mixed")
    expected = observed.models.mixed.predict_proba(MIXED_ROWS)
    np.testing.assert_array_equal(_array(got["output"]), expected)


def test_grpc_infer_bytes_output_with_empty_strings(observed: Observed) -> None:
    got = observed.value("grpc.infer.label")
    assert got["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [5]}]
    expected = observed.models.label.predict(NUMERIC.head(5)).tolist()
    assert "" in expected and got["output"]["data"] == expected


def test_grpc_request_id_priority_and_custom_parameters(observed: Observed) -> None:
    # priority goes as uint64_param; custom int and str parameters as int64_param/string_param
    # (double_param is covered in test_server_grpc.py: tritonclient 2.41 sends no float parameter).
    got = observed.value("grpc.infer.options")
    assert got["id"] == "r-1"
    np.testing.assert_array_equal(_array(got["output"]), observed.models.num_proba(ROWS))


def test_grpc_errors_carry_the_servers_status_and_message(observed: Observed) -> None:
    bad = observed.error("grpc.infer.bad")
    assert bad["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "expected [rows, 3]" in bad["message"]
    unknown = observed.error("grpc.infer.unknown")
    assert unknown["status"] == "StatusCode.NOT_FOUND" and "'nope'" in unknown["message"]


# ----------------------------------------------------------- tritonclient.http
def test_http_health_and_metadata(observed: Observed) -> None:
    for check in ("live", "ready", "model_ready", "model_ready_v1"):
        assert observed.value(f"http.{check}") is True, check
    assert observed.value("http.model_ready_unknown") is False
    assert observed.value("http.server_metadata")["name"] == "shipyard"
    model = observed.value("http.model_metadata")
    assert model["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]


@pytest.mark.parametrize("datatype", list(MATRICES))
def test_http_json_infer_of_each_datatype(observed: Observed, datatype: str) -> None:
    got = observed.value(f"http.infer.{datatype}")
    assert (got["model_name"], got["model_version"], got["id"]) == ("num", "1", None)
    expected = observed.models.num_proba(MATRICES[datatype])
    np.testing.assert_array_equal(_array(got["output"]), expected)


def test_http_json_bytes_inputs_and_outputs(observed: Observed) -> None:
    mixed = observed.value("http.infer.mixed")
    expected = observed.models.mixed.predict_proba(MIXED_ROWS)
    np.testing.assert_array_equal(_array(mixed["output"]), expected)
    label = observed.value("http.infer.label")
    assert label["output"]["data"] == observed.models.label.predict(NUMERIC.head(5)).tolist()
    assert observed.value("http.infer.options")["id"] == "r-2"


def test_http_default_binary_call_is_a_clear_400(observed: Observed) -> None:
    error = observed.error("http.infer.binary_default")
    assert error["text"].startswith("[400]")
    assert "binary tensor data extension is not supported" in error["message"]


def test_http_failing_infer_surfaces_the_servers_message(observed: Observed) -> None:
    error = observed.error("http.infer.bad")
    assert error["text"].startswith("[400]")
    assert "expected [rows, 3]" in error["message"]
