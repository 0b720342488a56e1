"""Deployment strategies in a running server: routing, sticky variants, headers, exposures,
shadows, blue-green switches and strategy changes picked up without a restart."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
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
from shipyard.storage.events import EXPOSURES, ParquetEventLog

WINDOW = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
ROWS = NUMERIC.head(1).to_numpy()


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
            "schedule": [{"weight": 0.05}, {"weight": 0.25}],
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
