"""The inference hot path: cheap metrics that expose what prometheus_client's own calls would,
lazy table columns, the NaN/inf checks, and request decoding errors that stay 4xx."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram

from shipyard import Settings, Workspace
from shipyard.core.oip import check_finite, decode_tensor, encode_output
from shipyard.core.signature import Batch, ColumnSpec, Signature, TableColumns
from shipyard.core.v1_protocol import v1_batch
from shipyard.errors import InvalidInput
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.metrics import LATENCY_BUCKETS, FastHistogram, ServerMetrics

RNG = np.random.default_rng(0)
FEATURES = pd.DataFrame(RNG.normal(size=(80, 3)), columns=["a", "b", "c"])
LABELS = (FEATURES["a"] > 0).astype(int)
ROW = [0.5, -1.0, 2.0]


# ------------------------------------------------------------------------ metrics
def _histogram_samples(registry: CollectorRegistry) -> dict[str, float]:
    (family,) = [m for m in registry.collect() if m.name == "h"]
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_fast_histogram_counts_each_value_in_the_bucket_observe_uses() -> None:
    values = [0.0, 1e-6, 0.0001, 0.000100001, 0.003, 0.25, 120.0, 120.5, 1e9]
    registries = CollectorRegistry(), CollectorRegistry()
    plain, fast = (
        Histogram("h", "h", ["m"], buckets=LATENCY_BUCKETS, registry=r).labels("x")
        for r in registries
    )
    fast_histogram = FastHistogram(fast)
    for value in values:
        plain.observe(value)
        fast_histogram.observe(value)
    expected = _histogram_samples(registries[0])
    assert expected["h_count"] == len(values)
    assert _histogram_samples(registries[1]) == expected


async def _in_flight_gauge_writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    metrics = ServerMetrics(CollectorRegistry())
    writes: list[float] = []
    original = Gauge.set

    def counting_set(self: Gauge, value: float) -> None:
        writes.append(value)
        original(self, value)

    monkeypatch.setattr(Gauge, "set", counting_set)
    count = metrics.in_flight_of("m")

    def shown() -> float | None:
        return metrics.registry.get_sample_value("shipyard_in_flight_requests", {"model": "m"})

    seen: dict[str, Any] = {}
    count.enter()
    count.leave()  # a request answered without yielding to the event loop
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    seen["writes after a request that never waited"] = list(writes)
    count.enter()
    seen["scrape while it runs"] = (
        b'shipyard_in_flight_requests{model="m"} 1.0' in (metrics.expose(None)[0])
    )
    count.leave()
    count.enter()
    await asyncio.sleep(0)  # this one waits: the event loop runs, the gauge shows it
    seen["while one waits"] = shown()
    count.leave()
    await asyncio.sleep(0)
    seen["after it ends"] = shown()
    seen["writes"] = list(writes)
    return seen


def test_in_flight_gauge_shows_waiting_requests_and_skips_those_that_never_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = asyncio.run(_in_flight_gauge_writes(monkeypatch))
    assert seen["writes after a request that never waited"] == []
    assert seen["scrape while it runs"]
    assert seen["while one waits"] == 1.0
    assert seen["after it ends"] == 0.0
    assert seen["writes"] == [1, 0]  # the scrape's 1 (still true while one waits), then 0


def test_in_flight_gauge_is_written_at_once_without_an_event_loop() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    count = metrics.in_flight_of("m")
    count.enter()
    labels = {"model": "m"}
    assert metrics.registry.get_sample_value("shipyard_in_flight_requests", labels) == 1.0
    count.leave()
    assert metrics.registry.get_sample_value("shipyard_in_flight_requests", labels) == 0.0


def test_in_flight_gauge_recovers_when_a_loop_closes_before_showing_it() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    count = metrics.in_flight_of("m")
    labels = {"model": "m"}

    first = asyncio.new_event_loop()

    def enter_then_stop() -> None:
        count.enter()  # schedules the write for the next iteration, which never comes
        first.stop()

    first.call_soon(enter_then_stop)
    first.run_forever()
    first.close()
    assert metrics.registry.get_sample_value("shipyard_in_flight_requests", labels) == 0.0

    async def wait_then_look() -> float | None:
        count.enter()
        await asyncio.sleep(0)
        return metrics.registry.get_sample_value("shipyard_in_flight_requests", labels)

    assert asyncio.run(wait_then_look()) == 2.0


@pytest.fixture
def lightgbm_home(tmp_path: Path) -> Path:
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1, n_jobs=1)
    ws = Workspace(Settings(home=tmp_path / "home"))
    ws.register_model("gbm", model.fit(FEATURES, LABELS), input_example=FEATURES.head(3))
    ws.close()
    return tmp_path / "home"


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [
            (b"host", b"t"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def _post_directly(app: Any, path: str, payload: Any) -> tuple[int, dict[str, str], Any]:
    """One request through the ASGI app, as uvicorn would send it (one body message)."""
    body = orjson.dumps(payload)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path, body), receive, send)
    start, answer = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, orjson.loads(answer["body"])


def test_inline_requests_are_counted_timed_and_leave_in_flight_at_zero(
    lightgbm_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config({"deployments": [{"name": "gbm", "model": "gbm/1"}]})
    state = build_state(config, Settings(home=lightgbm_home))
    app = create_app(state)
    writes: list[float] = []
    original = Gauge.set

    def counting_set(self: Gauge, value: float) -> None:
        if self._name == "shipyard_in_flight_requests":
            writes.append(value)
        original(self, value)

    monkeypatch.setattr(Gauge, "set", counting_set)
    request = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}

    async def scenario() -> list[tuple[int, dict[str, str], Any]]:
        await state.start()
        try:
            answers = [await _post_directly(app, "/v2/models/gbm/infer", request) for _ in range(3)]
            answers.append(await _post_directly(app, "/v2/models/gbm/infer", {"inputs": 1}))
            await asyncio.sleep(0)
            return answers
        finally:
            await state.stop()

    answers = asyncio.run(scenario())
    assert [status for status, _, _ in answers] == [200, 200, 200, 400]
    _, headers, body = answers[0]
    assert headers["x-shipyard-model-version"] == "1"
    assert headers["content-type"] == "application/json"
    assert body["model_version"] == "1" and body["outputs"][0]["shape"] == [1, 2]
    runner = state.endpoints["gbm"].runner
    assert runner is not None
    expected = runner.model.predict(pd.DataFrame([ROW], columns=["a", "b", "c"]))
    np.testing.assert_allclose(body["outputs"][0]["data"], np.ravel(expected))
    sample = state.metrics.registry.get_sample_value
    rest = {"model": "gbm", "protocol": "rest"}
    assert sample("shipyard_requests_total", {**rest, "version": "1", "code": "200"}) == 3
    assert sample("shipyard_requests_total", {**rest, "version": "1", "code": "400"}) == 1
    assert sample("shipyard_request_duration_seconds_count", rest) == 4
    assert sample("shipyard_inference_duration_seconds_count", {"model": "gbm"}) == 3
    assert sample("shipyard_in_flight_requests", {"model": "gbm"}) == 0
    assert writes == []  # the model runs on the event loop: no request ever waited


# -------------------------------------------------------------------- batches
def test_table_columns_read_like_a_dict_of_column_views() -> None:
    table = np.arange(12, dtype=np.float64).reshape(3, 4)
    names = ("a", "b", "c", "b")  # a repeated name keeps its first place and its last column
    columns = TableColumns(names, table)
    expected = {n: table[:, i] for i, n in enumerate(names)}
    assert list(columns) == list(expected) and len(columns) == len(expected) == 3
    for name, values in expected.items():
        assert name in columns
        np.testing.assert_array_equal(columns[name], values)
        assert np.shares_memory(columns[name], table)
    assert "z" not in columns
    with pytest.raises(KeyError):
        columns["z"]
    batch = Batch.from_table(["x", "y"], np.ones((2, 2)))
    assert batch.columns is not None
    assert list(batch.frame().columns) == ["x", "y"]


@pytest.mark.parametrize(
    ("value", "allow_nan", "allow_inf", "refused"),
    [
        pytest.param(np.nan, True, False, False, id="nan-allowed"),
        pytest.param(np.nan, False, True, True, id="nan-refused"),
        pytest.param(np.inf, True, False, True, id="inf-refused"),
        pytest.param(-np.inf, True, False, True, id="minus-inf-refused"),
        pytest.param(-np.inf, False, True, False, id="inf-allowed"),
        pytest.param(np.nan, False, False, True, id="nothing-allowed"),
        pytest.param(1.7e308, False, False, False, id="huge-but-finite"),
    ],
)
def test_check_finite_follows_the_policy(
    value: float, allow_nan: bool, allow_inf: bool, refused: bool
) -> None:
    table = np.array([[1.0, value], [1.7e308, -1.7e308]])
    batch = Batch.from_table(["a", "b"], table)
    if refused:
        with pytest.raises(InvalidInput) as raised:
            check_finite(batch, allow_nan=allow_nan, allow_inf=allow_inf)
        assert raised.value.field == "b"
    else:
        check_finite(batch, allow_nan=allow_nan, allow_inf=allow_inf)


def test_encode_output_refuses_non_finite_values_only() -> None:
    big = np.array([[np.finfo(np.float32).max, 1.0]], dtype=np.float32)
    encoded = encode_output(big)
    assert (encoded["datatype"], encoded["shape"]) == ("FP32", [1, 2])
    assert orjson.loads(orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY))["data"][1] == 1
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            encode_output(np.array([[0.5, bad]]))


# ------------------------------------------------------------------- decoding
def test_decoded_data_has_the_declared_shape_and_type() -> None:
    flat = {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}
    nested = {**flat, "data": [[1, 2], [3, 4]]}
    single = {**flat, "datatype": "FP32"}
    for raw, dtype in ((flat, np.float64), (nested, np.float64), (single, np.float32)):
        name, array = decode_tensor(raw, 0)
        assert name == "x" and array.dtype == dtype and array.shape == (2, 2)
        np.testing.assert_array_equal(array, [[1, 2], [3, 4]])
    with pytest.raises(InvalidInput, match="needs 4"):
        decode_tensor({**flat, "data": [1.0, 2.0]}, 0)


@pytest.mark.parametrize(
    "datatype", [pytest.param([], id="list"), pytest.param({"a": 1}, id="object")]
)
def test_an_unhashable_datatype_is_a_client_error(datatype: Any) -> None:
    raw = {"name": "x", "shape": [1], "datatype": datatype, "data": [1.0]}
    with pytest.raises(InvalidInput, match="is not supported") as raised:
        decode_tensor(raw, 0)
    assert raised.value.field == "x.datatype"


def test_a_v1_integer_beyond_int64_is_a_client_error() -> None:
    signature = Signature((ColumnSpec("a", "float64"), ColumnSpec("b", "int64")))
    with pytest.raises(InvalidInput, match="expects int64") as raised:
        v1_batch({"inputs": {"a": 1.0, "b": -(2**63) - 1}}, signature)
    assert raised.value.field == "b"
