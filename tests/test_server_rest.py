"""The REST server: Open Inference Protocol v2 conformance, v1 JSON, validation, admin, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from oip_harness import LABELS, MIXED, NUMERIC, mixed_model
from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config

TOKEN = "s3cret-token"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ws = Workspace(Settings(home=tmp_path / "home", user="t"))
    numeric = LogisticRegression().fit(NUMERIC, LABELS)
    ws.register_model("num", numeric, input_example=NUMERIC.head(3))
    ws.register_model(
        "num", LogisticRegression(C=0.01).fit(NUMERIC, LABELS), input_example=NUMERIC.head(3)
    )
    ws.registry.set_alias("num", "production", 1)
    ws.register_model("mixed", mixed_model(), input_example=MIXED.head(3))
    ws.close()
    return tmp_path / "home"


def _client(
    home: Path, deployments: list[dict[str, Any]] | None = None, **config: Any
) -> TestClient:
    deployments = deployments or [
        {"name": "num", "model": "num@production"},
        {"name": "mixed", "model": "mixed/1"},
    ]
    settings = Settings(home=home, admin_token=TOKEN)  # type: ignore[arg-type]
    state = build_state(load_config({"deployments": deployments, **config}), settings)
    return TestClient(create_app(state))


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with _client(home) as c:
        yield c


def _expected(model_version: int, rows: pd.DataFrame, home: Path) -> np.ndarray[Any, Any]:
    ws = Workspace(Settings(home=home))
    out = ws.load_model(f"models:/num/{model_version}").predict(rows)
    ws.close()
    return out


def _matrix_request(rows: np.ndarray[Any, Any], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
        ],
        **extra,
    }


def _assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    for fragment in fragments:
        assert fragment in body["error"]


# ------------------------------------------------------------------ health
def test_health_and_server_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for path in ("/v2", "/v2/"):
        meta = client.get(path).json()
        assert meta["name"] == "shipyard" and isinstance(meta["extensions"], list)
        assert meta["version"]
    assert client.get("/v2/models/num/ready").json() == {"name": "num", "ready": True}
    assert client.get("/v2/models/num/versions/1/ready").json() == {"name": "num", "ready": True}
    _assert_error(client.get("/v2/models/num/versions/2/ready"), 400, "not ready")
    _assert_error(client.get("/v2/models/nope/ready"), 404, "nope", "num")


def test_a_model_that_fails_to_load_keeps_the_server_unready_and_says_why(home: Path) -> None:
    with _client(home, [{"name": "ghost", "model": "ghost@production"}]) as c:
        assert c.get("/v2/health/live").status_code == 200
        _assert_error(c.get("/v2/health/ready"), 400, "ghost")
        _assert_error(c.get("/v2/models/ghost/ready"), 400, "not ready")
        response = c.post("/v2/models/ghost/infer", json=_matrix_request(np.zeros((1, 3))))
        _assert_error(response, 503, "ghost", "not found")
        assert response.headers["retry-after"] == "1"


def test_model_metadata_describes_inputs_and_outputs(client: TestClient) -> None:
    for path in ("/v2/models/num", "/v2/models/num/versions/1"):
        meta = client.get(path).json()
        assert meta == {
            "name": "num",
            "versions": ["1"],
            "platform": "shipyard_sklearn",
            "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}],
            "outputs": [{"name": "output", "datatype": "FP64", "shape": [-1, 2]}],
        }
    mixed = client.get("/v2/models/mixed").json()
    assert mixed["inputs"] == [
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "income", "datatype": "FP64", "shape": [-1]},
    ]
    _assert_error(client.get("/v2/models/nope"), 404, "nope")
    _assert_error(client.get("/v2/models/num/versions/7"), 404, "version 7")


# ------------------------------------------------------------------- infer
def test_infer_flat_and_nested_data_give_the_models_answer(client: TestClient, home: Path) -> None:
    rows = NUMERIC.head(4).to_numpy()
    nested = client.post("/v2/models/num/infer", json=_matrix_request(rows, id="req-1"))
    flat_body = _matrix_request(rows)
    flat_body["inputs"][0]["data"] = rows.ravel().tolist()
    flat = client.post("/v2/models/num/infer", json=flat_body)
    assert nested.status_code == flat.status_code == 200
    body = nested.json()
    assert body["id"] == "req-1" and "id" not in flat.json()
    assert (body["model_name"], body["model_version"]) == ("num", "1")
    assert nested.headers["x-shipyard-model-version"] == "1"
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP64", [4, 2])
    assert len(output["data"]) == 8
    expected = _expected(1, NUMERIC.head(4), home)
    np.testing.assert_array_equal(np.array(output["data"]).reshape(4, 2), expected)
    assert flat.json()["outputs"] == body["outputs"]


def test_infer_per_column_inputs_with_strings_and_integers(client: TestClient) -> None:
    rows = MIXED.head(3)
    request = {
        "inputs": [
            {"name": "city", "shape": [3], "datatype": "BYTES", "data": rows["city"].tolist()},
            {"name": "age", "shape": [3, 1], "datatype": "INT64", "data": rows["age"].tolist()},
            {"name": "income", "shape": [3], "datatype": "FP64", "data": rows["income"].tolist()},
        ],
        "model_name": "mixed",  # extra top-level fields are ignored
        "parameters": {"priority": 1},
    }
    response = client.post("/v2/models/mixed/infer", content=_dumps(request), headers={})
    assert response.status_code == 200, response.text
    expected = mixed_model().predict_proba(rows)
    np.testing.assert_allclose(
        np.array(response.json()["outputs"][0]["data"]).reshape(3, 2), expected, rtol=0, atol=0
    )


def test_requested_outputs(client: TestClient) -> None:
    rows = NUMERIC.head(1).to_numpy()
    one = client.post(
        "/v2/models/num/infer", json=_matrix_request(rows, outputs=[{"name": "output"}])
    )
    assert [o["name"] for o in one.json()["outputs"]] == ["output"]
    bad = client.post("/v2/models/num/infer", json=_matrix_request(rows, outputs=[{"name": "x"}]))
    _assert_error(bad, 400, "unknown output 'x'")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        pytest.param(b"{not json", ("not valid JSON",), id="malformed-json"),
        pytest.param(b'{"id": "x"}', ("'inputs'",), id="missing-inputs"),
        pytest.param(
            b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64","data":[1,2]}]}',
            ("2 element(s)", "[1, 3]"),
            id="count-mismatch",
        ),
        pytest.param(
            b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP128","data":[1,2,3]}]}',
            ("FP128",),
            id="unknown-datatype",
        ),
        pytest.param(
            b'{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[1]}]}',
            ("missing column", "b"),
            id="wrong-input-name",
        ),
        pytest.param(
            b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64","data":["1","2","3"]}]}',
            ("must be numbers",),
            id="strings-for-numbers",
        ),
        pytest.param(
            b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,2,3,4]}]}',
            ("[rows, 3]",),
            id="wrong-width",
        ),
        pytest.param(
            b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP64",'
            b'"parameters":{"binary_data_size":24}}]}',
            ("binary tensor data",),
            id="binary-extension",
        ),
    ],
)
def test_client_errors_are_400_with_an_error_body(
    client: TestClient, body: bytes, fragments: tuple[str, ...]
) -> None:
    _assert_error(client.post("/v2/models/num/infer", content=body), 400, *fragments)


def test_unknown_model_wrong_method_and_unknown_route(client: TestClient) -> None:
    _assert_error(
        client.post("/v2/models/nope/infer", json=_matrix_request(np.zeros((1, 3)))), 404, "nope"
    )
    _assert_error(client.get("/v2/models/num/infer"), 405, "GET")
    _assert_error(client.get("/v3/what"), 404, "/v3/what")


def test_nan_policy_names_the_column(home: Path) -> None:
    body = {"instances": [{"a": 1.0, "b": None, "c": 2.0}]}
    with _client(home) as c:  # NaN passes validation; this model itself refuses it
        _assert_error(c.post("/v1/models/num:predict", json=body), 500, "version 1 failed", "NaN")
    with _client(home, [{"name": "num", "model": "num/1", "allow_nan": False}]) as c:
        _assert_error(c.post("/v1/models/num:predict", json=body), 400, "NaN", "'b'")


def test_body_size_limit_is_413(home: Path) -> None:
    with _client(home, max_body_bytes=2048) as c:
        rows = np.zeros((200, 3))
        _assert_error(c.post("/v2/models/num/infer", json=_matrix_request(rows)), 413, "limit")


def test_row_limit_per_request(home: Path) -> None:
    deployments = [{"name": "num", "model": "num/1", "max_batch_rows": 5}]
    with _client(home, deployments) as c:
        _assert_error(
            c.post("/v2/models/num/infer", json=_matrix_request(np.zeros((6, 3)))),
            400,
            "limit is 5",
        )


# ---------------------------------------------------------------------- v1
def test_v1_records_rows_and_columns_agree(client: TestClient, home: Path) -> None:
    rows = NUMERIC.head(2)
    bodies = [
        {"instances": rows.to_dict(orient="records")},
        {"instances": rows.to_numpy().tolist()},
        {"inputs": {c: rows[c].tolist() for c in rows.columns}},
    ]
    expected = _expected(1, rows, home).tolist()
    for body in bodies:
        response = client.post("/v1/models/num:predict", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "predictions": expected,
            "model_name": "num",
            "model_version": "1",
        }
    _assert_error(client.post("/v1/models/num:predict", json={"rows": []}), 400, "instances")
    _assert_error(
        client.post("/v1/models/num:predict", json={"instances": [{"a": 1, "b": 2}]}), 400, "c"
    )
    _assert_error(client.post("/v1/models/num:explain", json={}), 404, ":predict")


# ------------------------------------------------------------------- admin
def test_admin_needs_the_token_and_reload_follows_alias_moves(
    client: TestClient, home: Path
) -> None:
    _assert_error(client.post("/admin/reload"), 401, "bearer")
    _assert_error(client.post("/admin/reload", headers={"Authorization": "Bearer nope"}), 401)
    ws = Workspace(Settings(home=home))
    ws.registry.set_alias("num", "production", 2)
    ws.close()
    reload = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reload.status_code == 200
    assert reload.json()["reloaded"] == {"num": True, "mixed": False}
    response = client.post("/v2/models/num/infer", json=_matrix_request(NUMERIC.head(1).to_numpy()))
    assert response.json()["model_version"] == "2"
    expected = _expected(2, NUMERIC.head(1), home)
    np.testing.assert_array_equal(np.array(response.json()["outputs"][0]["data"]), expected.ravel())
    status = client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert status["status"]["num"]["version"] == 2


def test_admin_api_is_disabled_without_a_token(home: Path) -> None:
    settings = Settings(home=home)
    state = build_state(load_config({"deployments": [{"name": "num", "model": "num/1"}]}), settings)
    with TestClient(create_app(state)) as c:
        _assert_error(
            c.post("/admin/reload", headers={"Authorization": "Bearer x"}), 401, "disabled"
        )


# ----------------------------------------------------------------- metrics
def test_metrics_count_requests_by_model_version_and_code(client: TestClient) -> None:
    client.post("/v2/models/num/infer", json=_matrix_request(NUMERIC.head(1).to_numpy()))
    client.post("/v2/models/num/infer", content=b"{bad")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'shipyard_requests_total{code="200",model="num",protocol="rest",version="1"} 1.0' in text
    assert 'shipyard_requests_total{code="400",model="num",protocol="rest",version="1"} 1.0' in text
    assert (
        'shipyard_request_duration_seconds_bucket{le="0.0001",model="num",protocol="rest"}' in text
    )
    assert 'shipyard_model_loads_total{model="num",outcome="ok"} 1.0' in text


# ---------------------------------------------------------------- batching
def test_dynamic_batching_merges_concurrent_requests(home: Path) -> None:
    deployments = [
        {"name": "num", "model": "num/1", "batching": {"max_batch_size": 64, "max_wait_ms": 50}}
    ]
    settings = Settings(home=home)
    state = build_state(load_config({"deployments": deployments}), settings)
    app = create_app(state)
    rows = NUMERIC.head(16)

    async def scenario() -> list[dict[str, Any]]:
        await state.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                responses = await asyncio.gather(
                    *(
                        c.post(
                            "/v2/models/num/infer", json=_matrix_request(rows.iloc[[i]].to_numpy())
                        )
                        for i in range(len(rows))
                    )
                )
                return [r.json() for r in responses]
        finally:
            await state.stop()

    answers = asyncio.run(scenario())
    got = np.array([a["outputs"][0]["data"] for a in answers])
    np.testing.assert_array_equal(got, _expected(1, rows, home))
    samples = {
        s.name: s.value
        for metric in state.metrics.batch_size.collect()
        for s in metric.samples
        if s.name.endswith(("_count", "_sum"))
    }
    assert samples["shipyard_batch_size_rows_sum"] == 16
    assert samples["shipyard_batch_size_rows_count"] < 16  # merged into fewer model calls


# ----------------------------------------------------------------- openapi
def test_openapi_document_lists_exactly_the_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    routes = {
        (route.path, method.lower())
        for route in client.app.app.routes  # type: ignore[attr-defined]  # behind the fast path
        for method in route.methods
        if method != "HEAD"
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == routes


def _dumps(payload: Any) -> bytes:
    return orjson.dumps(payload)
