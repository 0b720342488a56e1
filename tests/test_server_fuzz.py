"""Fuzzing: the request parsers with hypothesis, the HTTP API from its OpenAPI document with
schemathesis. Whatever arrives, the answer is a clear 4xx or a success — never a 5xx or a crash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from shipyard import Settings, Workspace
from shipyard.core.oip import decode_tensor, tensors_to_batch
from shipyard.core.signature import infer_signature
from shipyard.core.v1_protocol import v1_batch
from shipyard.errors import InvalidInput
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config

FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4], "s": ["x", "y"]})
SIGNATURE = infer_signature(FRAME)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "s", "input", "zz"]) | st.text(max_size=3),
        "datatype": st.sampled_from(
            ["FP64", "FP32", "INT64", "INT8", "UINT64", "BOOL", "BYTES", "FP16"]
        )
        | st.text(max_size=4),
        "shape": st.lists(st.integers(-2, 4), max_size=3) | json_values,
        "data": json_values,
    },
    optional={"parameters": json_values},
)


@settings(max_examples=400, deadline=None)
@given(raw=st.lists(tensors | json_values, min_size=1, max_size=3))
def test_oip_parsing_never_fails_with_anything_but_invalid_input(raw: list[Any]) -> None:
    try:
        decoded = dict(decode_tensor(item, i) for i, item in enumerate(raw))
        batch = tensors_to_batch(SIGNATURE, decoded)
    except InvalidInput as exc:
        assert exc.message
        return
    assert batch.num_rows >= 0


@settings(max_examples=400, deadline=None)
@given(
    body=json_values
    | st.fixed_dictionaries(
        {"inputs": st.dictionaries(st.sampled_from(["a", "b", "s"]), json_values)}
    )
)
@example(
    body={"inputs": {"a": [[1.0], 2.0], "b": [1, 2], "s": ["x", "y"]}}
)  # found by schemathesis
def test_v1_parsing_never_fails_with_anything_but_invalid_input(body: Any) -> None:
    try:
        batch = v1_batch(body, SIGNATURE)
    except InvalidInput as exc:
        assert exc.message
        return
    assert batch.columns is not None and set(batch.columns) == {"a", "b", "s"}


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.floats(-1e6, 1e6), st.integers(-(2**40), 2**40)), min_size=1, max_size=8
    )
)
def test_valid_tensors_round_trip_exactly(rows: list[tuple[float, int]]) -> None:
    a = [r[0] for r in rows]
    b = [r[1] for r in rows]
    raw = [
        {"name": "a", "datatype": "FP64", "shape": [len(rows)], "data": a},
        {"name": "b", "datatype": "INT64", "shape": [len(rows), 1], "data": [[v] for v in b]},
        {"name": "s", "datatype": "BYTES", "shape": [len(rows)], "data": ["q"] * len(rows)},
    ]
    batch = tensors_to_batch(SIGNATURE, dict(decode_tensor(t, i) for i, t in enumerate(raw)))
    assert batch.columns is not None
    np.testing.assert_array_equal(batch.columns["a"], np.array(a))
    np.testing.assert_array_equal(batch.columns["b"], np.array(b, dtype=np.int64))


# ------------------------------------------------------------------ schemathesis
@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    ws = Workspace(Settings(home=home))
    x = pd.DataFrame({"a": np.arange(8.0), "b": np.arange(8.0) ** 2})
    ws.register_model("num", LogisticRegression().fit(x, [0, 1] * 4), input_example=x.head(2))
    ws.close()
    state = build_state(
        load_config({"deployments": [{"name": "num", "model": "num/1"}]}),
        Settings(home=home, admin_token="t"),  # type: ignore[arg-type]
    )
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        yield client


def _fuzz_operation(client: TestClient, api: Any, failures: list[str], statuses: list[int]) -> int:
    """Send up to 60 generated requests to one operation; count them, record any 5xx."""
    sent = 0

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=api.as_strategy())
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        response = client.request(
            kwargs["method"],
            kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            json=kwargs.get("json"),
        )
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{api.method.upper()} {api.path}: {response.status_code} {response.text[:200]}"
            )
        elif response.status_code >= 400:
            assert response.json()["error"]

    run()
    return sent


@pytest.mark.slow
def test_http_api_fuzzed_from_its_openapi_document(app_client: TestClient) -> None:
    schema = schemathesis.openapi.from_dict(app_client.get("/openapi.json").json())
    failures: list[str] = []
    statuses: list[int] = []
    for operation in schema.get_all_operations():
        _fuzz_operation(app_client, operation.ok(), failures, statuses)
    assert len(statuses) > 300
    assert failures == []
    assert {200, 400, 404} <= set(statuses)  # the fuzzer reached both success and refusals
