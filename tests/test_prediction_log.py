"""The server's prediction log: what each transport records, the bounded queue (drops counted,
requests never wait), sampling, PII columns, retention, graceful shutdown of a real server under
load, and files that a writer killed with SIGKILL cannot leave torn."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import grpc
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats
from starlette.testclient import TestClient

from oip_harness import MIXED, NUMERIC, Models, register_models, serve
from shipyard import Settings, Workspace
from shipyard.core.signature import Batch
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.endpoints import Prediction
from shipyard.server.metrics import ServerMetrics
from shipyard.server.prediction_log import PredictionLog
from shipyard.server.proto import inference_pb2 as pb
from shipyard.server.proto import inference_pb2_grpc as pb_grpc
from shipyard.server.routing import sampled
from shipyard.server.state import ServerState
from shipyard.storage.events import PREDICTIONS, EventKind, ParquetEventLog
from shipyard.storage.events.kinds import TIME

WINDOW = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Models]:
    """num (3 numeric columns, probabilities [n, 2]), mixed (city, age, income), label."""
    home = tmp_path_factory.mktemp("predlog") / "home"
    return home, register_models(home)


def _copy_home(source: Path, tmp_path: Path) -> Path:
    """A workspace of its own for each test (the registered models, no events yet)."""
    home = tmp_path / "home"
    subprocess.run(["cp", "-a", str(source), str(home)], check=True)
    return home


def _client(home: Path, deployments: list[dict[str, Any]], **config: Any) -> TestClient:
    state = build_state(load_config({"deployments": deployments, **config}), Settings(home=home))
    return TestClient(create_app(state))


def _logged(home: Path, model: str) -> list[dict[str, Any]]:
    log = ParquetEventLog(home / "events")
    return log.read(PREDICTIONS, model, *WINDOW).to_pylist()


def _matrix(rows: np.ndarray[Any, Any], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    return {"inputs": [tensor], **extra}


# ------------------------------------------------------------------ transports
def test_rest_v2_and_v1_answers_are_logged_with_every_field(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    models = registered[1]
    rows = NUMERIC.head(2).to_numpy()
    before = datetime.now(UTC)
    with _client(home, [{"name": "num", "model": "num@production"}]) as client:
        headed = client.post(
            "/v2/models/num/infer",
            json=_matrix(rows),
            headers={"X-Request-ID": "from-header", "X-Shipyard-Unit": "user-7"},
        )
        bodied = client.post("/v2/models/num/infer", json=_matrix(rows[:1], id="from-body"))
        v1 = client.post("/v1/models/num:predict", json={"instances": [dict(NUMERIC.iloc[0])]})
    after = datetime.now(UTC)
    assert [r.status_code for r in (headed, bodied, v1)] == [200, 200, 200]
    assert "x-request-id" not in headed.headers and "x-request-id" not in bodied.headers
    generated = v1.headers["x-request-id"]  # no id given: the server made one and answered it
    assert generated

    records = _logged(home, "num")
    by_id = {(r["request_id"], r["row"]): r for r in records}
    assert set(by_id) == {("from-body", 0), ("from-header", 0), ("from-header", 1), (generated, 0)}
    proba = models.num_proba(rows)
    for row in (0, 1):
        record = by_id[("from-header", row)]
        assert record["unit_key"] == "user-7"
        assert [record["in_a"], record["in_b"], record["in_c"]] == rows[row].tolist()
        assert [record["out_output_0"], record["out_output_1"]] == proba[row].tolist()
    for record in records:
        assert record["model"] == "num" and record["version"] == 1 and record["variant"] is None
        assert before <= record["time"] <= after
        assert 0 < record["latency_ms"] < (after - before).total_seconds() * 1000
    assert by_id[(generated, 0)]["in_a"] == NUMERIC.iloc[0]["a"]
    assert by_id[("from-body", 0)]["unit_key"] is None


def test_columns_of_every_type_and_string_outputs_are_logged(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    inputs = [
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["oslo", "rome"]},
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [51.5, 42.0]},
    ]
    deployments = [{"name": "mixed", "model": "mixed/1"}, {"name": "label", "model": "label/1"}]
    with _client(home, deployments) as client:
        assert client.post("/v2/models/mixed/infer", json={"inputs": inputs}).status_code == 200
        label = client.post("/v2/models/label/infer", json=_matrix(NUMERIC.head(1).to_numpy()))
        assert label.status_code == 200
    mixed = _logged(home, "mixed")
    assert [(r["in_city"], r["in_age"], r["in_income"]) for r in mixed] == [
        ("oslo", 30, 51.5),
        ("rome", 41, 42.0),
    ]
    (labelled,) = _logged(home, "label")
    assert labelled["out_output"] == label.json()["outputs"][0]["data"][0]


def test_grpc_answers_are_logged_with_metadata_ids(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    rows = NUMERIC.head(2).to_numpy()

    def request(request_id: str = "") -> Any:
        message = pb.ModelInferRequest(model_name="num", id=request_id)
        tensor = message.inputs.add(name="input", datatype="FP64", shape=rows.shape)
        tensor.contents.fp64_contents.extend(rows.ravel().tolist())
        return message

    deployments = [{"name": "num", "model": "num@production"}]
    with (
        serve(home, deployments, drain_s=0) as server,
        grpc.insecure_channel(server.grpc_address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        by_id = stub.ModelInfer(request("grpc-1"), metadata=(("x-shipyard-unit", "u-1"),))
        by_metadata = stub.ModelInfer(request("ignored"), metadata=(("x-request-id", "m-2"),))
        anonymous, call = stub.ModelInfer.with_call(request())
        made = dict(call.initial_metadata())["x-request-id"]
    assert server.process.returncode == 0
    assert by_id.id == "grpc-1" and by_metadata.id == "ignored"
    # The protocol echoes ids and never invents one in the body: the server's own id for an
    # anonymous request comes back as x-request-id metadata.
    assert anonymous.id == "" and made
    records = _logged(home, "num")
    assert sorted((r["request_id"], r["row"]) for r in records) == sorted(
        (i, row) for i in ("grpc-1", "m-2", made) for row in (0, 1)
    )
    first = [r for r in records if r["request_id"] == "grpc-1"]
    assert [r["unit_key"] for r in first] == ["u-1", "u-1"]
    assert [[r["in_a"], r["in_b"], r["in_c"]] for r in first] == rows.tolist()
    answer = np.frombuffer(by_id.raw_output_contents[0], "<f8").reshape(2, 2)
    assert [[r["out_output_0"], r["out_output_1"]] for r in first] == answer.tolist()


# --------------------------------------------------------------- bounded queue
class BlockingLog(ParquetEventLog):
    """A storage whose append waits until released (the writer is stuck; the queue is not)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.appended: list[str] = []

    def append(self, kind: EventKind, records: pa.Table) -> int:
        self.entered.set()
        assert self.release.wait(60), "never released"
        self.appended.extend(records.column("request_id").to_pylist())
        return super().append(kind, records)


def test_a_full_queue_drops_and_counts_without_blocking_requests(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    config = load_config(
        {
            "deployments": [{"name": "num", "model": "num@production"}],
            "prediction_log": {"queue_rows": 10, "flush_rows": 1, "flush_interval_s": 60},
        }
    )
    storage = BlockingLog(home / "events")
    metrics = ServerMetrics(CollectorRegistry())
    state = ServerState(
        config, Workspace(Settings(home=home)), metrics, admin_token=None, events=storage
    )
    row = _matrix(NUMERIC.head(1).to_numpy())

    def send(client: TestClient, request_id: str) -> int:
        return client.post(
            "/v2/models/num/infer", json=row, headers={"X-Request-ID": request_id}
        ).status_code

    statuses: list[int] = []
    with TestClient(create_app(state)) as client:
        assert send(client, "q00") == 200
        assert storage.entered.wait(30)  # the writer holds q00 and is stuck

        def burst() -> None:
            statuses.extend(send(client, f"q{i:02d}") for i in range(1, 31))

        sender = threading.Thread(target=burst)
        sender.start()
        sender.join(timeout=60)
        assert not sender.is_alive(), "requests waited for the stuck writer"
        assert not storage.release.is_set()
        dropped = metrics.registry.get_sample_value(
            "shipyard_prediction_log_dropped_total", {"model": "num", "reason": "queue_full"}
        )
        assert state.predictions.queued_rows == 10
        storage.release.set()
    assert statuses == [200] * 30
    assert dropped == 21  # 10 rows held (1 being written + 9 queued), the other 21 dropped
    assert storage.appended == [f"q{i:02d}" for i in range(10)]
    written = metrics.registry.get_sample_value(
        "shipyard_prediction_log_written_total", {"model": "num"}
    )
    assert written == 10
    assert [r["request_id"] for r in _logged(home, "num")] == [f"q{i:02d}" for i in range(10)]


def test_a_failed_write_is_counted_and_logging_goes_on(tmp_path: Path) -> None:
    class FailingOnce(ParquetEventLog):
        failed = False

        def append(self, kind: EventKind, records: pa.Table) -> int:
            if not self.failed:
                self.failed = True
                raise OSError("disk full")
            return super().append(kind, records)

    storage = FailingOnce(tmp_path / "events")
    log, metrics = _direct_log(storage, {"sample_rate": 1.0})

    async def scenario() -> None:
        log.start()
        _submit(log, ["a", "b"])
        await log.flush()
        _submit(log, ["c"])
        await log.close()

    asyncio.run(scenario())
    failed = metrics.registry.get_sample_value(
        "shipyard_prediction_log_dropped_total", {"model": "num", "reason": "write_failed"}
    )
    assert failed == 2
    assert [r["request_id"] for r in storage.read(PREDICTIONS, "num", *WINDOW).to_pylist()] == ["c"]
    errors = metrics.registry.get_sample_value(
        "shipyard_prediction_log_flushes_total", {"outcome": "error"}
    )
    assert errors == 1


# ----------------------------------------------------------- sampling and PII
def _direct_log(
    storage: ParquetEventLog, log_config: dict[str, Any], **server: Any
) -> tuple[PredictionLog, ServerMetrics]:
    config = load_config(
        {"deployments": [{"name": "num", "model": "num/1", "log": log_config}], **server}
    )
    metrics = ServerMetrics(CollectorRegistry())
    return PredictionLog(storage, config, metrics), metrics


def _submit(log: PredictionLog, request_ids: list[str]) -> None:
    batch = Batch.from_table(["a"], np.array([[1.0]]))
    for request_id in request_ids:
        log.log("num", batch, Prediction(np.array([0.5]), 1), request_id, None, time.perf_counter())


def test_the_sample_rate_holds_within_binomial_tolerance(tmp_path: Path) -> None:
    storage = ParquetEventLog(tmp_path / "events")
    rate, n = 0.2, 20_000
    log, _ = _direct_log(storage, {"sample_rate": rate}, prediction_log={"queue_rows": n})
    request_ids = [f"req-{i}" for i in range(n)]

    async def scenario() -> None:
        log.start()
        _submit(log, request_ids)
        _submit(log, request_ids[:1000])  # the same ids again: the same decisions
        await log.close()

    asyncio.run(scenario())
    counts = Counter(storage.read(PREDICTIONS, "num", *WINDOW).column("request_id").to_pylist())
    low, high = stats.binom.interval(0.9999, n, rate)
    assert low <= len(counts) <= high
    for request_id, count in counts.items():  # resent ids: logged both times or neither
        assert count == (2 if int(request_id.removeprefix("req-")) < 1000 else 1)
    assert set(counts) == {i for i in request_ids if sampled(i, rate)}


def test_one_flush_of_two_versions_and_multi_row_requests_keeps_each_row(tmp_path: Path) -> None:
    """An alias moved between flushes: each version's rows get their own file and numbers."""
    storage = ParquetEventLog(tmp_path / "events")
    log, _ = _direct_log(storage, {})
    answers = [  # (request id, version, input rows, outputs)
        ("r1", 1, [[1.0, 2.0]], [0.1]),
        ("r2", 2, [[3.0, 4.0], [5.0, 6.0]], [0.2, 0.3]),
        ("r3", 1, [[7.0, 8.0], [9.0, 10.0]], [0.4, 0.5]),
    ]

    async def scenario() -> None:
        for request_id, version, rows, outputs in answers:
            batch = Batch.from_table(["a", "b"], np.array(rows))
            prediction = Prediction(np.array(outputs), version)
            log.log("num", batch, prediction, request_id, None, time.perf_counter())
        assert await log.flush() == 5
        await log.close()

    asyncio.run(scenario())
    records = storage.read(PREDICTIONS, "num", *WINDOW).to_pylist()
    got = sorted(
        (r["request_id"], r["row"], r["version"], r["in_a"], r["in_b"], r["out_output"])
        for r in records
    )
    assert got == [
        ("r1", 0, 1, 1.0, 2.0, 0.1),
        ("r2", 0, 2, 3.0, 4.0, 0.2),
        ("r2", 1, 2, 5.0, 6.0, 0.3),
        ("r3", 0, 1, 7.0, 8.0, 0.4),
        ("r3", 1, 1, 9.0, 10.0, 0.5),
    ]
    assert len(list((tmp_path / "events").rglob("part-*.parquet"))) == 2


def test_a_deployment_at_rate_zero_logs_nothing(tmp_path: Path) -> None:
    storage = ParquetEventLog(tmp_path / "events")
    log, _ = _direct_log(storage, {"sample_rate": 0.0})
    assert not log.logs("num")

    async def scenario() -> None:
        log.start()
        _submit(log, ["a", "b"])
        await log.close()

    asyncio.run(scenario())
    assert not (tmp_path / "events").exists()


def test_pii_columns_are_dropped_or_hashed_before_they_are_written(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    deployment = {
        "name": "mixed",
        "model": "mixed/1",
        "log": {"drop": ["income"], "hash": ["city"]},
    }
    frame = MIXED.head(20)
    with _client(home, [deployment]) as client:
        answer = client.post(
            "/v1/models/mixed:predict", json={"instances": frame.to_dict("records")}
        )
        assert answer.status_code == 200
    records = _logged(home, "mixed")
    salt = ParquetEventLog(home / "events").salt()
    assert "in_income" not in records[0]
    assert [r["in_age"] for r in records] == frame["age"].tolist()
    assert [r["in_city"] for r in records] == [
        hmac.new(salt, city.encode(), hashlib.sha256).hexdigest() for city in frame["city"]
    ]
    written = b"".join(p.read_bytes() for p in (home / "events").rglob("*.parquet"))
    for city in set(frame["city"]):
        assert city.encode() not in written


def test_retention_at_start_deletes_old_hours(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    home = _copy_home(registered[0], tmp_path)
    storage = ParquetEventLog(home / "events")
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=3), now - timedelta(hours=2)
    storage.append(
        PREDICTIONS,
        pa.table(
            {
                "time": pa.array([old, recent], TIME),
                "model": ["num", "num"],
                "request_id": ["old", "recent"],
                "row": [0, 0],
                "latency_ms": [1.0, 1.0],
            }
        ),
    )
    deployments = [{"name": "num", "model": "num/1"}]
    with _client(home, deployments, prediction_log={"retention_days": 1}):
        pass
    assert [r["request_id"] for r in _logged(home, "num")] == ["recent"]


# ------------------------------------------------------- a real server process
@pytest.mark.slow
def test_sigterm_under_load_loses_no_answered_prediction(
    registered: tuple[Path, Models], tmp_path: Path
) -> None:
    """Two workers, clients sending until the server is gone, SIGTERM in the middle: every
    request answered 2xx is in the log, which nothing wrote before shutdown (interval 10 min)."""
    home = _copy_home(registered[0], tmp_path)
    row = _matrix(NUMERIC.head(1).to_numpy())
    answered: list[str] = []
    stop = threading.Event()
    deployments = [{"name": "num", "model": "num@production"}]
    config = {"prediction_log": {"flush_interval_s": 600, "flush_rows": 1_000_000}}

    def load(base: str, client_id: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            i = 0
            while not stop.is_set():
                request_id = f"c{client_id}-{i}"
                i += 1
                headers = {"X-Request-ID": request_id} if i % 2 else {}  # else made by the server
                try:
                    response = client.post("/v2/models/num/infer", json=row, headers=headers)
                except httpx.TransportError:
                    time.sleep(0.01)  # refused during shutdown: retry until told to stop
                    continue
                if response.status_code == 200:
                    answered.append(response.headers.get("x-request-id", request_id))

    with serve(home, deployments, drain_s=1.0, workers=2, **config) as server:
        threads = [threading.Thread(target=load, args=(server.rest_url, c)) for c in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(answered) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not list((home / "events").rglob("part-*.parquet"))  # nothing flushed yet
        at_signal = len(answered)
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=60)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert exit_code == 0, server.log_tail()
    assert len(answered) > at_signal  # requests kept being answered while draining
    logged = [r["request_id"] for r in _logged(home, "num")]
    assert len(logged) == len(set(logged))
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} answered predictions are not in the log"


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from shipyard.storage.events import PREDICTIONS, ParquetEventLog
    from shipyard.storage.events.kinds import TIME

    log, rows, name = ParquetEventLog(Path(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first = int((start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    micros = first + np.arange(rows, dtype=np.int64) % 3_000_000_000  # within one hour
    base = pa.table(
        {
            "time": pa.array(micros).cast(TIME),
            "model": pa.repeat(pa.scalar("m"), rows),
            "request_id": pa.array([f"{name}-{i}-" for i in range(rows)]),
            "row": pa.array(np.zeros(rows, np.int32)),
            "in_x": pa.array(np.random.default_rng(0).normal(size=rows)),
        }
    )
    batch = 0
    while True:  # every file: one batch, its number as latency_ms and in its request ids
        table = base.set_column(
            2, "request_id", pc.binary_join_element_wise(base.column("request_id"), str(batch), "")
        ).append_column("latency_ms", pa.repeat(pa.scalar(float(batch)), rows))
        log.append(PREDICTIONS, table)
        batch += 1
        print(batch, flush=True)
    """
)


@pytest.mark.slow
def test_a_writer_killed_mid_flush_never_leaves_a_torn_file(tmp_path: Path) -> None:
    root = tmp_path / "events"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER, encoding="utf-8")
    rng = random.Random(5)
    rows = 50_000
    killed_mid_file = 0
    log = ParquetEventLog(root)
    for attempt in range(8):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(root), str(rows), str(attempt)],
            stdout=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert writer.stdout is not None
        for _ in range(rng.randint(1, 3)):  # let it finish a few files, then kill it mid-way
            assert writer.stdout.readline(), "the writer died on its own"
        time.sleep(rng.uniform(0.0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        killed_mid_file += bool(list(root.rglob(".part-*.tmp")))
        for temp in root.rglob(".part-*.tmp"):
            temp.unlink()  # so the next round shows its own
        files = sorted(root.rglob("part-*.parquet"))
        for file in files:  # every file a reader can see is whole
            table = pq.read_table(file)
            assert table.num_rows > 0
            assert len(set(table.column("latency_ms").to_pylist())) == 1  # one batch per file
        counted = duckdb.sql(
            "SELECT count(*), count(DISTINCT request_id) "
            f"FROM read_parquet('{log.glob(PREDICTIONS)}')"
        ).fetchall()
        read = log.read(PREDICTIONS, "m", *WINDOW)
        assert counted[0][0] == counted[0][1] == read.num_rows
        assert read.num_rows % rows == 0  # whole batches only
    assert killed_mid_file >= 1, "no kill landed while a file was being written"


@pytest.mark.parametrize(
    "arrays",
    [
        [np.arange(6.0).reshape(2, 3), np.arange(3.0).reshape(1, 3)],  # joined as bytes
        [np.ones((1, 3), np.float32), np.ones((1, 3))],  # dtypes differ
        [np.arange(12.0).reshape(3, 4)[:, :3], np.zeros((1, 3))],  # not contiguous
        [np.array([["a", None]], object), np.array([["b", "c"]], object)],  # objects
        [np.arange(8.0).reshape(1, 2, 4), np.arange(8.0).reshape(1, 2, 4)],  # tensors
        [np.arange(4.0).reshape(2, 2), np.arange(4.0).reshape(1, 4)],  # row shapes differ
        [np.ones((1, 2)), np.ones((1, 1)), np.ones((1, 3))],  # differ, as many bytes as rows
    ],
)
def test_stacking_queued_arrays_equals_concatenation(arrays: list[np.ndarray[Any, Any]]) -> None:
    from shipyard.server.prediction_log import _stacked, _transposed

    try:
        expected = np.concatenate(arrays)
    except ValueError:
        with pytest.raises(ValueError):
            _stacked(arrays)
        return
    stacked = _stacked(arrays)
    assert stacked.dtype == expected.dtype
    np.testing.assert_array_equal(stacked, expected)
    if stacked.ndim == 2 and stacked.dtype.kind == "f":
        transposed = _transposed(np.tile(stacked, (3000, 1)), block=7)
        np.testing.assert_array_equal(transposed, np.tile(stacked, (3000, 1)).T)
