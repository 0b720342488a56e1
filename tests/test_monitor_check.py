"""One monitoring check on plain tables: drift of the logged window, quality from late outcomes,
latency, and the figures the alert rules judge."""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sklearn.metrics import roc_auc_score

from shipyard.core.alert_rules import Rule, evaluate
from shipyard.monitor import error_rate, request_counts
from shipyard.monitoring.check import check_model, latest_outcomes
from shipyard.server.metrics import ServerMetrics

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _predictions(n: int, *, shift: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, n)
    score = 1 / (1 + np.exp(-(age - 40) / 10))
    return pa.table(
        {
            "time": pa.array(
                [T0 + timedelta(seconds=10 * i) for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
            "model": ["churn"] * n,
            "version": [1] * n,
            "request_id": [f"r{i}" for i in range(n)],
            "row": pa.array([0] * n, pa.int32()),
            "latency_ms": rng.uniform(0.1, 2.0, n),
            "in_age": age,
            "in_plan": rng.choice(["basic", "pro"], n),
            "out_output_0": 1 - score,
            "out_output_1": score,
        }
    )


def _reference(n: int = 2000) -> pa.Table:
    rng = np.random.default_rng(99)
    age = rng.normal(40, 10, n)
    score = 1 / (1 + np.exp(-(age - 40) / 10))
    return pa.table(
        {
            "age": age,
            "plan": rng.choice(["basic", "pro"], n),
            "out_output_0": 1 - score,
            "out_output_1": score,
        }
    )


def test_drifted_inputs_and_outputs_are_found_and_judged_by_rules() -> None:
    reference = _reference()
    calm = check_model(
        model="churn",
        version=1,
        start=T0,
        end=T0 + timedelta(hours=1),
        predictions=_predictions(500, shift=0, seed=1),
        reference=reference,
        reference_columns=reference.column_names,
    )
    drifted = check_model(
        model="churn",
        version=1,
        start=T0,
        end=T0 + timedelta(hours=1),
        predictions=_predictions(500, shift=15, seed=1),
        reference=reference,
        reference_columns=reference.column_names,
    )
    assert calm.drift is not None and drifted.drift is not None
    assert calm.drift.drifted_columns == []
    assert drifted.drift.drifted_columns == ["age"]
    assert drifted.drift.prediction_drift and not calm.drift.prediction_drift
    rules = [Rule("share", "drift_share", 0.4), Rule("age", "column_drift", 0.99, column="age")]
    assert evaluate(rules, calm.figures()) == []
    assert [f.rule.name for f in evaluate(rules, drifted.figures())] == ["share", "age"]
    assert drifted.latency_p99_ms is not None and 0.1 < drifted.latency_p99_ms <= 2.0
    document = drifted.to_dict()
    assert document["drift"]["columns"][0]["column"] == "age" and document["rows"] == 500


def test_quality_joins_late_outcomes_by_request_and_keeps_the_latest_per_key() -> None:
    predictions = _predictions(400, shift=0, seed=2)
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < predictions.column("out_output_1").to_numpy()).astype(float)
    labelled = list(range(0, 400, 2))  # half the outcomes have arrived
    outcomes = pa.table(
        {
            "time": pa.array(
                [T0 + timedelta(days=1)] * len(labelled), pa.timestamp("us", tz="UTC")
            ),
            "request_id": [f"r{i}" for i in labelled],
            "row": pa.array([0] * len(labelled), pa.int32()),
            "label": labels[labelled],
            "idempotency_key": [f"k{i}" for i in labelled],
        }
    )
    wrong_then_fixed = pa.table(
        {
            "time": pa.array([T0 + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
            "request_id": ["r0"],
            "row": pa.array([0], pa.int32()),
            "label": [1.0 - labels[0]],  # an earlier, superseded outcome for r0
            "idempotency_key": ["k0-old"],
        }
    )
    all_outcomes = pa.concat_tables([wrong_then_fixed, outcomes, outcomes])  # + duplicates
    assert latest_outcomes(all_outcomes).num_rows == len(labelled)
    result = check_model(
        model="churn",
        version=1,
        start=T0,
        end=T0 + timedelta(hours=2),
        predictions=predictions,
        reference=None,
        outcomes=all_outcomes,
        task="binary",
        baseline={"roc_auc": 0.99},
        max_change={"roc_auc": 0.05},
        performance_window_s=1000,
    )
    performance = result.performance
    assert performance is not None
    assert (performance["labelled_rows"], performance["unlabelled_rows"]) == (200, 200)
    scores = predictions.column("out_output_1").to_numpy()[labelled]
    assert performance["overall"]["roc_auc"] == pytest.approx(
        roc_auc_score(labels[labelled], scores)
    )
    assert [w["rows"] for w in performance["windows"]] == [50] * 4  # 100 predictions per 1000 s
    assert [d["metric"] for d in performance["degradations"]] == ["roc_auc"]
    assert result.figures().metric_drops["roc_auc"] == pytest.approx(
        0.99 - performance["overall"]["roc_auc"]
    )


def test_adwin_on_the_score_stream_dates_the_change() -> None:
    calm = _predictions(600, shift=0, seed=4)
    later = _predictions(600, shift=15, seed=5)
    times = pa.array(
        [T0 + timedelta(seconds=10 * i) for i in range(600, 1200)], pa.timestamp("us", tz="UTC")
    )
    stream = pa.concat_tables([calm, later.set_column(0, "time", times)])
    quiet = check_model(
        model="churn",
        version=1,
        start=T0,
        end=T0 + timedelta(hours=4),
        predictions=calm,
        reference=None,
    )
    assert quiet.streaming is not None and quiet.streaming["changes"] == 0
    moved = check_model(
        model="churn",
        version=1,
        start=T0,
        end=T0 + timedelta(hours=4),
        predictions=stream,
        reference=None,
    )
    found = moved.streaming
    assert found is not None and found["changes"] >= 1
    first = datetime.fromisoformat(found["first_change_at"])
    assert T0 + timedelta(seconds=6000) <= first <= T0 + timedelta(seconds=6000 + 10 * 300)
    assert found["mean_after"] > found["mean_before"] + 0.2


def test_error_rate_from_a_servers_metrics() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    for protocol, code, times in (
        ("rest", 200, 90),
        ("rest", 400, 5),  # the client's fault: not a failure of the model
        ("rest", 503, 3),
        ("grpc", "OK", 10),
        ("grpc", "INTERNAL", 2),
    ):
        for _ in range(times):
            metrics.finish("churn", "1", protocol, code, 0.001)
    metrics.finish("other", "1", "rest", 500, 0.001)
    body = generate_latest(metrics.registry)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        counts = request_counts(f"http://127.0.0.1:{server.server_address[1]}", "churn")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert counts == (5.0, 110.0)
    assert error_rate(counts) == pytest.approx(5 / 110)
    assert error_rate((7.0, 130.0), counts) == pytest.approx(2 / 20)
    assert error_rate((5.0, 110.0), counts) is None
