"""Server resilience: circuit breaker with fallbacks, load shedding, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from starlette.testclient import TestClient

from serving_models import Flaky, Gate, Steady
from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.state import ServerState

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
GOOD = {"instances": [{"a": 1.0, "b": 2.0}]}
BAD = {"instances": [{"a": 500.0, "b": 2.0}]}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ws = Workspace(Settings(home=tmp_path / "home"))
    ws.register_model("flaky", Flaky(), input_example=EXAMPLE)  # version 1
    ws.register_model("backup", Steady(), input_example=EXAMPLE)
    ws.register_model("gate", Gate(), input_example=EXAMPLE)
    ws.close()
    return tmp_path / "home"


def _state(home: Path, deployment: dict[str, Any]) -> ServerState:
    return build_state(load_config({"deployments": [deployment]}), Settings(home=home))


@pytest.fixture
def breaker_client(home: Path) -> Iterator[tuple[TestClient, ServerState]]:
    state = _state(
        home,
        {
            "name": "flaky",
            "model": "flaky/1",
            "breaker": {"window": 4, "min_calls": 4, "failure_rate": 0.5, "open_s": 0.5},
            "fallback": {"model": "backup/1"},
        },
    )
    with TestClient(create_app(state), raise_server_exceptions=False) as client:
        yield client, state


def _primary_calls(state: ServerState) -> int:
    runner = state.endpoints["flaky"].runner
    assert runner is not None
    return int(runner.model.model.model.calls)


def test_failures_are_answered_by_the_fallback_then_the_breaker_opens(
    breaker_client: tuple[TestClient, ServerState],
) -> None:
    client, state = breaker_client
    ok = client.post("/v1/models/flaky:predict", json=GOOD)
    assert ok.status_code == 200 and "x-shipyard-fallback" not in ok.headers
    for _ in range(3):  # 3 failures of 4 calls: the breaker opens
        failed = client.post("/v1/models/flaky:predict", json=BAD)
        assert failed.status_code == 200
        assert failed.headers["x-shipyard-fallback"] == "model"
        assert failed.json()["fallback"] == "model"
    calls_when_opened = _primary_calls(state)
    for _ in range(5):  # open: the primary is not called, even for good requests
        answer = client.post("/v1/models/flaky:predict", json=GOOD)
        assert answer.status_code == 200 and answer.json()["fallback"] == "model"
        assert answer.json()["predictions"] == [[0.0, 1.0]]
    assert _primary_calls(state) == calls_when_opened
    oip = client.post(
        "/v2/models/flaky/infer",
        json={"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
    )
    assert oip.json()["parameters"] == {"fallback": "model"}
    metrics = client.get("/metrics").text
    assert 'shipyard_circuit_breaker_state{model="flaky"} 2.0' in metrics
    assert 'shipyard_fallback_responses_total{model="flaky",reason="error"} 3.0' in metrics
    assert 'shipyard_fallback_responses_total{model="flaky",reason="open"} 6.0' in metrics


def test_the_breaker_half_opens_after_its_open_time_and_closes_on_success(
    breaker_client: tuple[TestClient, ServerState],
) -> None:
    client, state = breaker_client
    for _ in range(4):
        client.post("/v1/models/flaky:predict", json=BAD)
    runner = state.endpoints["flaky"].runner
    assert runner is not None
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # wait out the configured open time
        time.sleep(0.05)
    probe = client.post("/v1/models/flaky:predict", json=GOOD)
    assert probe.status_code == 200 and "fallback" not in probe.json()
    assert runner.breaker.state(time.monotonic()).value == "closed"


def test_without_a_fallback_an_open_breaker_is_503_with_retry_after(home: Path) -> None:
    deployment = {
        "name": "flaky",
        "model": "flaky/1",
        "breaker": {"window": 2, "min_calls": 2, "failure_rate": 1.0, "open_s": 30},
    }
    with TestClient(create_app(_state(home, deployment)), raise_server_exceptions=False) as c:
        for _ in range(2):
            failed = c.post("/v1/models/flaky:predict", json=BAD)
            assert failed.status_code == 500
            assert "refuses a > 100" in failed.json()["error"]
        refused = c.post("/v1/models/flaky:predict", json=GOOD)
        assert refused.status_code == 503
        assert "circuit breaker is open" in refused.json()["error"]
        assert 25 <= int(refused.headers["retry-after"]) <= 30


def test_a_constant_fallback_answers_every_row(home: Path) -> None:
    deployment = {
        "name": "flaky",
        "model": "flaky/1",
        "fallback": {"constant": [0.5, 0.5]},
    }
    with TestClient(create_app(_state(home, deployment)), raise_server_exceptions=False) as c:
        body = {"instances": [{"a": 500.0, "b": 1.0}, {"a": 1.0, "b": 1.0}]}
        answer = c.post("/v1/models/flaky:predict", json=body)
        assert answer.status_code == 200
        assert answer.json() == {
            "predictions": [[0.5, 0.5], [0.5, 0.5]],
            "model_name": "flaky",
            "model_version": None,
            "fallback": "constant",
        }


def _run_concurrently(state: ServerState, scenario: Any) -> Any:
    app = create_app(state)

    async def main() -> Any:
        await state.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await scenario(client)
        finally:
            await state.stop()

    return asyncio.run(main())


def test_requests_beyond_the_queue_limit_are_shed_with_503(home: Path) -> None:
    state = _state(home, {"name": "gate", "model": "gate/1", "max_queue": 2})

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], httpx.Response]:
        runner = state.endpoints["gate"].runner
        assert runner is not None
        gate = runner.model.model.model
        held = [
            asyncio.create_task(client.post("/v1/models/gate:predict", json=GOOD)) for _ in range(2)
        ]
        in_flight = {"model": "gate"}
        registry = state.metrics.registry
        while registry.get_sample_value("shipyard_in_flight_requests", in_flight) != 2:
            await asyncio.sleep(0.001)
        shed = await client.post("/v1/models/gate:predict", json=GOOD)
        gate.release.set()
        return [r.status_code for r in await asyncio.gather(*held)], shed

    statuses, shed = _run_concurrently(state, scenario)
    assert statuses == [200, 200]
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert "requests in progress" in shed.json()["error"]
    shed_total = state.metrics.registry.get_sample_value(
        "shipyard_shed_requests_total", {"model": "gate"}
    )
    assert shed_total == 1


def test_a_request_over_its_timeout_is_504(home: Path) -> None:
    state = _state(home, {"name": "gate", "model": "gate/1", "timeout_s": 0.2})

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        runner = state.endpoints["gate"].runner
        assert runner is not None
        try:
            return await client.post("/v1/models/gate:predict", json=GOOD)
        finally:
            runner.model.model.model.release.set()

    response = _run_concurrently(state, scenario)
    assert response.status_code == 504
    assert "within 0.2 s" in response.json()["error"]


def test_response_cache_answers_repeated_inputs_without_calling_the_model(home: Path) -> None:
    deployment = {"name": "flaky", "model": "flaky/1", "cache_size": 2}
    state = _state(home, deployment)
    with TestClient(create_app(state)) as client:
        first = client.post("/v1/models/flaky:predict", json={"instances": [{"a": 1.0, "b": 2.0}]})
        calls = _primary_calls(state)
        same_as_oip = client.post(
            "/v2/models/flaky/infer",
            json={
                "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]
            },
        )
        assert _primary_calls(state) == calls  # a hit, though sent in another form
        assert same_as_oip.json()["outputs"][0]["data"] == [1.0, 2.0]
        assert first.json()["predictions"] == [[1.0, 2.0]]
        for a in (3.0, 4.0):  # two new inputs evict the first (size 2)
            client.post("/v1/models/flaky:predict", json={"instances": [{"a": a, "b": 2.0}]})
        client.post("/v1/models/flaky:predict", json={"instances": [{"a": 1.0, "b": 2.0}]})
        assert _primary_calls(state) == calls + 3
        metrics = client.get("/metrics").text
    assert 'shipyard_response_cache_requests_total{model="flaky",result="hit"} 1.0' in metrics
    assert 'shipyard_response_cache_requests_total{model="flaky",result="miss"} 4.0' in metrics
