"""Deployment strategies in a running server: routing, sticky variants, headers, exposures,
shadows, blue-green switches and strategy changes picked up without a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from oip_harness import LABELS, NUMERIC
from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.server.state import ServerState
from shipyard.storage.events import EXPOSURES, PREDICTIONS, ParquetEventLog

WINDOW = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
ROWS = NUMERIC.head(1).to_numpy()
AB = {  # an even A/B test between the two registered versions
    "type": "ab_test",
    "variants": [{"name": "a", "model": "num/1"}, {"name": "b", "model": "num/2"}],
}


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """``num`` versions 1 and 2 (different fits), alias production → 1."""
    home = tmp_path_factory.mktemp("rollouts") / "home"
    ws = Workspace(Settings(home=home, user="t"))
    models = [LogisticRegression(C=c).fit(NUMERIC, LABELS) for c in (1.0, 0.01)]
    for model in models:
        ws.register_model("num", model, input_example=NUMERIC.head(3))
    ws.registry.set_alias("num", "production", 1)
    ws.close()
    return home, models


def _home(source: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    subprocess.run(["cp", "-a", str(source), str(home)], check=True)
    return home


def _server(home: Path, **config: Any) -> tuple[TestClient, ServerState]:
    deployments = [{"name": "num", "model": "num@production"}]
    settings = Settings(home=home)
    state = build_state(load_config({"deployments": deployments, **config}), settings)
    return TestClient(create_app(state)), state


def _client(home: Path, **config: Any) -> TestClient:
    return _server(home, **config)[0]


def _body(**extra: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROWS.tolist()}
    return {"inputs": [tensor], **extra}


def _rollouts(home: Path) -> Workspace:
    return Workspace(Settings(home=home, user="tester"))


def test_a_canary_splits_by_unit_stickily_and_logs_exposures(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    home = _home(registered[0], tmp_path)
    models = registered[1]
    ws = _rollouts(home)
    ws.rollouts.create(
        "canary-1",
        "num",
        {
            "type": "canary",
            "baseline": "num@production",
            "candidate": "num/2",
            "schedule": [{"weight": 0.3}],
        },
    )
    ws.rollouts.start("canary-1")
    answers: dict[str, tuple[str, str]] = {}
    with _client(home) as client:
        for unit in range(400):
            response = client.post(
                "/v2/models/num/infer", json=_body(), headers={"X-Shipyard-Unit": f"u{unit}"}
            )
            assert response.status_code == 200
            variant = response.headers["x-shipyard-variant"]
            version = response.headers["x-shipyard-model-version"]
            body = response.json()
            assert body["parameters"]["variant"] == variant
            assert body["parameters"]["model_version"] == version == body["model_version"]
            expected = models[int(version) - 1].predict_proba(NUMERIC.head(1))
            assert np.allclose(body["outputs"][0]["data"], expected.ravel())
            answers[f"u{unit}"] = (variant, version)
        for unit in range(0, 400, 7):  # the same unit: the same variant
            again = client.post(
                "/v2/models/num/infer", json=_body(), headers={"X-Shipyard-Unit": f"u{unit}"}
            )
            assert again.headers["x-shipyard-variant"] == answers[f"u{unit}"][0]
        v1 = client.post(
            "/v1/models/num:predict",
            json={"instances": [dict(NUMERIC.iloc[0])]},
            headers={"X-Shipyard-Unit": "u3"},
        )
        assert v1.json()["variant"] == answers["u3"][0]
    assert {
        v: {ver for var, ver in answers.values() if var == v} for v in ("baseline", "candidate")
    } == {
        "baseline": {"1"},
        "candidate": {"2"},
    }
    candidates = sum(v == "candidate" for v, _ in answers.values())
    low, high = stats.binom.ppf([0.0005, 0.9995], 400, 0.3)
    assert low <= candidates <= high
    exposures = ParquetEventLog(home / "events").read(EXPOSURES, "canary-1", *WINDOW)
    assert exposures.num_rows == 400 + len(range(0, 400, 7)) + 1
    first = {}
    for record in exposures.to_pylist():
        assert record["deployment"] == "num" and record["status"] == 200
        first.setdefault(record["unit_key"], record["variant"])
    assert first == {unit: variant for unit, (variant, _) in answers.items()}
    ws.close()


def test_ramping_the_canary_keeps_earlier_candidates_and_needs_no_restart(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create(
        "ramp",
        "num",
        {
            "type": "canary",
            "baseline": "num@production",
            "candidate": "num/2",
            # steps the controller never takes by itself: this test moves them
            "schedule": [
                {"weight": 0.05, "min_exposures": 10**9},
                {"weight": 0.25, "min_exposures": 10**9},
            ],
        },
    )
    state = ws.rollouts.start("ramp")
    units = [f"user-{i}" for i in range(300)]

    def variants(client: TestClient) -> dict[str, str]:
        out = {}
        for unit in units:
            response = client.post(
                "/v2/models/num/infer", json=_body(), headers={"X-Shipyard-Unit": unit}
            )
            assert response.status_code == 200
            out[unit] = response.headers["x-shipyard-variant"]
        return out

    client, server = _server(home, reload_interval_s=0.05)
    with client:
        before = variants(client)
        ws.rollouts.advance(
            "ramp", 1, [0.75, 0.25], expected_revision=state.revision, now=datetime.now(UTC)
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the watcher picks the change up
            routing = server.endpoints["num"].routing
            if routing is not None and routing.revision == state.revision + 1:
                break
            time.sleep(0.05)
        after = variants(client)
    early = {u for u, v in before.items() if v == "candidate"}
    late = {u for u, v in after.items() if v == "candidate"}
    assert early and early <= late and len(late) > len(early)
    ws.close()


TOKEN = "admin-secret"
SLOW_MODULE = '''
import time

import numpy as np


class SlowScorer:
    """A shadow candidate that takes 2 s an answer."""

    def load_context(self, context):
        pass

    def predict(self, context, model_input):
        time.sleep(2.0)
        return np.asarray(model_input, dtype=np.float64).sum(axis=1)
'''


def test_blue_green_switches_atomically_through_the_admin_api(
    registered: tuple[Path, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home(registered[0], tmp_path)
    monkeypatch.setenv("SHIPYARD_ADMIN_TOKEN", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    strategy = {"type": "blue_green", "blue": "num/1", "green": "num/2"}
    url = "/admin/deployments/num/strategy"

    def served(client: TestClient) -> set[tuple[str, str]]:
        answers = [client.post("/v2/models/num/infer", json=_body()) for _ in range(20)]
        return {
            (a.headers["x-shipyard-variant"], a.headers["x-shipyard-model-version"])
            for a in answers
        }

    with _client(home) as client:
        assert client.put(url, json={"strategy": strategy}).status_code == 401
        bad = client.put(url, json={"strategy": {**strategy, "live": "red"}}, headers=auth)
        assert bad.status_code == 400 and "live" in bad.json()["error"]
        put = client.put(url, json={"strategy": strategy, "reason": "release 2"}, headers=auth)
        assert put.status_code == 200 and put.json()["weights"] == {"blue": 1.0}
        assert served(client) == {("blue", "1")}
        assert client.post("/admin/deployments/num/switch", headers=auth).status_code == 200
        assert served(client) == {("green", "2")}
        assert client.post("/admin/deployments/num/switch", headers=auth).status_code == 200
        assert served(client) == {("blue", "1")}
        history = client.get("/admin/deployments/num/history", headers=auth).json()["changes"]
    assert [c["action"] for c in history] == ["switch-blue", "switch-green", "set"]
    assert {c["actor"] for c in history} == {"admin-api"}
    assert history[-1]["reason"] == "release 2"


def test_a_slow_shadow_never_delays_the_primary_and_both_answers_are_logged(
    registered: tuple[Path, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from shipyard import PythonModelPackage

    home = _home(registered[0], tmp_path)
    module_path = tmp_path / "slow_scorer.py"
    module_path.write_text(SLOW_MODULE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("slow_scorer", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "slow_scorer", module)
    spec.loader.exec_module(module)
    ws = _rollouts(home)
    package = PythonModelPackage(module.SlowScorer(), code_paths=[module_path])
    ws.register_model("slow", package, input_example=NUMERIC.head(3))
    ws.rollouts.set_strategy(
        "num", {"type": "shadow", "primary": "num@production", "candidates": ["slow/1"]}
    )
    expected = registered[1][0].predict_proba(NUMERIC.head(1)).ravel()
    latencies, ids = [], []
    client, server = _server(home, drain_s=15.0)
    with client:
        for i in range(12):
            started = time.perf_counter()
            answer = client.post(
                "/v2/models/num/infer", json=_body(), headers={"X-Request-ID": f"r{i}"}
            )
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200
            assert answer.headers["x-shipyard-variant"] == "primary"
            assert np.allclose(answer.json()["outputs"][0]["data"], expected)
            ids.append(f"r{i}")
    # The candidate takes 2 s: had the primary waited for it, every latency would exceed 2 s.
    assert max(latencies) < 0.5, latencies
    records = ParquetEventLog(home / "events").read(PREDICTIONS, "num", *WINDOW).to_pylist()
    by_variant: dict[str, set[str]] = {}
    for record in records:
        by_variant.setdefault(record["variant"], set()).add(record["request_id"])
    assert by_variant == {"primary": set(ids), "shadow-1": set(ids)}
    shadow = next(r for r in records if r["variant"] == "shadow-1")
    assert shadow["version"] == 1 and shadow["out_output"] == pytest.approx(ROWS.sum())
    registry = server.metrics.registry
    ok = registry.get_sample_value(
        "shipyard_shadow_requests_total", {"model": "num", "variant": "shadow-1", "outcome": "ok"}
    )
    assert ok == 12
    ws.close()


def test_a_full_exposure_queue_drops_and_counts_and_shutdown_writes_the_rest(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create("ab", "num", AB)
    ws.rollouts.start("ab")
    client, server = _server(
        home, prediction_log={"queue_rows": 5, "flush_rows": 1000, "flush_interval_s": 3600}
    )
    with client:
        for i in range(9):
            assert (
                client.post(
                    "/v2/models/num/infer", json=_body(), headers={"X-Shipyard-Unit": f"u{i}"}
                ).status_code
                == 200
            )
        dropped = server.metrics.registry.get_sample_value(
            "shipyard_exposures_dropped_total", {"model": "num", "reason": "queue_full"}
        )
        assert dropped == 4
        assert server.exposures.queued == 5
    exposures = ParquetEventLog(home / "events").read(EXPOSURES, "ab", *WINDOW)
    assert exposures.column("unit_key").to_pylist() == [f"u{i}" for i in range(5)]
    ws.close()


def test_grpc_answers_carry_the_variant_and_version_parameters(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    import grpc

    from oip_harness import free_port
    from shipyard.server.proto import inference_pb2 as pb
    from shipyard.server.proto import inference_pb2_grpc as pb_grpc

    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create("g", "num", AB)
    ws.rollouts.start("g")
    port = free_port()
    client, _ = _server(home, grpc_port=port)
    request = pb.ModelInferRequest(model_name="num")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[1, 3])
    tensor.contents.fp64_contents.extend(ROWS.ravel().tolist())
    with client, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        seen = {}
        for unit in ("u1", "u2", "u3", "u4", "u1", "u2"):
            response = stub.ModelInfer(request, metadata=(("x-shipyard-unit", unit),))
            variant = response.parameters["variant"].string_param
            version = response.parameters["model_version"].string_param
            assert version == response.model_version == {"a": "1", "b": "2"}[variant]
            assert seen.setdefault(unit, variant) == variant
    exposures = ParquetEventLog(home / "events").read(EXPOSURES, "g", *WINDOW).to_pylist()
    assert [(e["unit_key"], e["variant"], e["status"]) for e in exposures] == [
        (u, seen[u], 200) for u in ("u1", "u2", "u3", "u4", "u1", "u2")
    ]
    ws.close()


def test_a_bandit_split_is_recomputed_from_outcomes_and_shared_by_replicas(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    from shipyard.monitor import log_outcomes

    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create(
        "bandit",
        "num",
        {
            "type": "bandit",
            "variants": [{"name": "a", "model": "num/1"}, {"name": "b", "model": "num/2"}],
            "metric": "click",
            "interval_s": 0.2,
            "floor": 0.05,
        },
    )
    ws.rollouts.start("bandit")
    reward = {"a": 0.1, "b": 0.9}
    rng = np.random.default_rng(3)
    first, replica_a = _server(home, reload_interval_s=0.1)
    second, replica_b = _server(home, reload_interval_s=0.1)
    with first, second:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            outcomes = []
            for _ in range(40):
                answer = first.post("/v2/models/num/infer", json=_body())
                variant = answer.headers["x-shipyard-variant"]
                outcomes.append(
                    {
                        "request_id": answer.headers["x-request-id"],
                        "metric": "click",
                        "label": float(rng.random() < reward[variant]),
                    }
                )
            log_outcomes(ws, "num", outcomes)
            routings = [r.endpoints["num"].routing for r in (replica_a, replica_b)]
            if all(r is not None and r.weights["b"] > 0.9 for r in routings):
                break
            time.sleep(0.1)
        routings = [r.endpoints["num"].routing for r in (replica_a, replica_b)]
    history = {c.revision: c.weights for c in ws.rollouts.history("num", limit=10_000)}
    for routing in routings:  # each replica serves a split the controller wrote to the DB
        assert routing is not None
        weights = routing.weights
        assert weights["b"] > 0.9 and weights["a"] >= 0.05 - 1e-9  # the exploration floor
        assert history[routing.revision] == (weights["a"], weights["b"])
    decisions = ws.rollouts.decisions("bandit")
    assert decisions and {d.action for d in decisions} == {"allocate"}
    ws.close()


def test_a_step_held_for_minutes_waits_for_the_injected_clock(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create(
        "timed",
        "num",
        {
            "type": "canary",
            "baseline": "num/1",
            "candidate": "num/2",
            "schedule": [{"weight": 0.5, "min_minutes": 30}],
        },
    )
    state = ws.rollouts.start("timed")
    clock = [state.updated_at]
    client, server = _server(home, reload_interval_s=0.05)
    server.clock = lambda: clock[0]
    with client:
        for unit in range(40):
            client.post(
                "/v2/models/num/infer", json=_body(), headers={"X-Shipyard-Unit": f"u{unit}"}
            )
        time.sleep(0.5)  # ten controller rounds at minute 0: the step must hold
        assert ws.rollouts.experiment("timed").status == "running"
        clock[0] = state.updated_at + timedelta(minutes=31)
        deadline = time.monotonic() + 10
        while ws.rollouts.experiment("timed").status == "running":
            assert time.monotonic() < deadline, "the controller never promoted"
            time.sleep(0.05)
    assert ws.rollouts.experiment("timed").status == "promoted"
    decision = ws.rollouts.decisions("timed")[-1]
    assert decision.action == "promote" and decision.details["step_minutes"] >= 31
    ws.close()


def test_strategy_changes_under_load_fail_no_request(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    import threading

    import httpx

    from oip_harness import serve

    home = _home(registered[0], tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[list[tuple[int, str]]] = [[] for _ in range(4)]  # one list per thread
    stop = threading.Event()

    def hammer(url: str, seen: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while not stop.is_set():
                answer = client.post("/v2/models/num/infer", json=_body())
                seen.append(
                    (answer.status_code, answer.headers.get("x-shipyard-model-version", "?"))
                )

    deployments = [{"name": "num", "model": "num@production"}]
    with serve(home, deployments, env={"SHIPYARD_ADMIN_TOKEN": TOKEN}) as server:
        threads = [threading.Thread(target=hammer, args=(server.rest_url, a)) for a in answers]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=server.rest_url, headers=auth) as admin:
            strategy = {"type": "blue_green", "blue": "num/1", "green": "num/2"}
            assert (
                admin.put(
                    "/admin/deployments/num/strategy", json={"strategy": strategy}
                ).status_code
                == 200
            )
            for _ in range(10):
                time.sleep(0.1)
                assert admin.post("/admin/deployments/num/switch").status_code == 200
            canary = {"type": "canary", "baseline": "num/1", "candidate": "num/2", "weight": 0.5}
            assert (
                admin.put("/admin/deployments/num/strategy", json={"strategy": canary}).status_code
                == 200
            )
            time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    statuses = Counter(status for seen in answers for status, _ in seen)
    versions = Counter(version for seen in answers for _, version in seen)
    assert set(statuses) == {200}, statuses
    assert versions["1"] > 0 and versions["2"] > 0


def test_the_unit_key_can_come_from_a_named_request_field(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    from shipyard.core.assignment import Allocation

    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create("by-field", "num", {**AB, "unit_field": "customer"})
    salt = ws.rollouts.start("by-field").salt
    expected = Allocation(["a", "b"], [0.5, 0.5])
    with _client(home) as client:
        for customer in range(30):
            v2 = client.post("/v2/models/num/infer", json=_body(parameters={"customer": customer}))
            v1 = client.post(
                "/v1/models/num:predict",
                json={"instances": [dict(NUMERIC.iloc[0])], "customer": f"{customer}"},
            )
            want = expected.assign(salt, str(customer))
            assert v2.headers["x-shipyard-variant"] == v1.json()["variant"] == want
    exposures = ParquetEventLog(home / "events").read(EXPOSURES, "by-field", *WINDOW)
    assert set(exposures.column("unit_key").to_pylist()) == {str(c) for c in range(30)}
    ws.close()


def test_exposures_are_logged_with_the_prediction_log_off(
    registered: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    home = _home(registered[0], tmp_path)
    ws = _rollouts(home)
    ws.rollouts.create("quiet", "num", AB)
    ws.rollouts.start("quiet")
    with _client(home, prediction_log={"enabled": False}) as client:
        for unit in range(5):
            headers = {"X-Shipyard-Unit": f"u{unit}"}
            assert client.post("/v2/models/num/infer", json=_body(), headers=headers).is_success
    log = ParquetEventLog(home / "events")
    assert log.read(EXPOSURES, "quiet", *WINDOW).num_rows == 5
    assert log.read(PREDICTIONS, "num", *WINDOW).num_rows == 0
    ws.close()
