"""End to end: a real ``shipyard serve`` process runs a canary schedule between two versions;
outcomes come back through ``POST /v1/feedback``; the server's rollout controller rolls a worse
candidate back and promotes a better one (moving the alias), recording its numbers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from oip_harness import LABELS, NUMERIC, serve
from shipyard import Settings, Workspace

TOKEN = "canary-admin-token"
ROWS = NUMERIC.head(1).to_numpy().tolist()
MAX_REQUESTS = 6000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("canary") / "home"
    ws = Workspace(Settings(home=home, user="t"))
    for c in (1.0, 0.01):
        ws.register_model(
            "num", LogisticRegression(C=c).fit(NUMERIC, LABELS), input_example=NUMERIC.head(3)
        )
    ws.registry.set_alias("num", "production", 1)
    ws.close()
    return home


def _canary(home: Path, source: Path) -> Workspace:
    subprocess.run(["cp", "-a", str(source), str(home)], check=True)
    ws = Workspace(Settings(home=home, user="t"))
    ws.rollouts.create(
        "num-canary",
        "num",
        {
            "type": "canary",
            "baseline": "num@production",
            "candidate": "num/2",
            "schedule": [
                {"weight": 0.3, "min_exposures": 300},
                {"weight": 0.6, "min_exposures": 300},
            ],
            "guardrails": [
                {"metric": "conversion", "higher_is_better": True},
                {"metric": "error_rate"},
            ],
            "promote_alias": "production",
        },
    )
    ws.rollouts.start("num-canary")
    return ws


def _drive(url: str, conversion: dict[str, float], ws: Workspace) -> list[str]:
    """Requests from distinct units, an outcome for each, until the experiment ends."""
    rng = np.random.default_rng(7)
    body = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROWS}]}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    variants = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for unit in range(MAX_REQUESTS):
            answer = client.post(
                "/v2/models/num/infer", json=body, headers={"X-Shipyard-Unit": f"u{unit}"}
            )
            assert answer.status_code == 200, answer.text
            variant = answer.headers["x-shipyard-variant"]
            variants.append(variant)
            if variant not in conversion:  # the experiment ended: one strategy serves alone
                return variants
            outcome = {
                "model": "num",
                "request_id": answer.headers["x-request-id"],
                "metric": "conversion",
                "label": float(rng.random() < conversion[variant]),
                "idempotency_key": f"o-{unit}",
            }
            stored = client.post("/v1/feedback", json=outcome, headers=auth)
            assert stored.status_code == 200, stored.text
            if unit % 50 == 49:
                time.sleep(0.3)  # let the controller look (it runs every 0.2 s)
    raise AssertionError(f"the canary did not end within {MAX_REQUESTS} requests")


def _config() -> dict[str, Any]:
    return {
        "reload_interval_s": 0.2,
        "prediction_log": {"flush_interval_s": 0.5},
    }


def test_a_candidate_worse_on_a_guardrail_is_rolled_back(registered: Path, tmp_path: Path) -> None:
    ws = _canary(tmp_path / "home", registered)
    deployments = [{"name": "num", "model": "num@production"}]
    with serve(
        ws.settings.home, deployments, env={"SHIPYARD_ADMIN_TOKEN": TOKEN}, **_config()
    ) as server:
        variants = _drive(server.rest_url, {"baseline": 0.5, "candidate": 0.2}, ws)
        assert variants[-1] == "default"
    experiment = ws.rollouts.experiment("num-canary")
    assert experiment.status == "rolled_back"
    decision = ws.rollouts.decisions("num-canary")[-1]
    assert decision.action == "rollback"
    checks = {c["guardrail"]["metric"]: c for c in decision.details["guardrails"]}
    conversion = checks["conversion"]
    assert conversion["breached"] is True
    assert conversion["relative"]["estimate"] < 0 and conversion["relative"]["ci_high"] < 0
    assert not checks["error_rate"]["breached"]
    state = ws.rollouts.state("num")
    assert state is not None and state.strategy.type == "single"
    assert state.strategy.model == "models:/num@production"
    assert ws.registry.resolve_number("num@production") == 1  # the alias never moved
    assert ws.rollouts.history("num")[0].action == "rolled_back"
    ws.close()


def test_a_better_candidate_is_promoted_and_the_alias_moves(
    registered: Path, tmp_path: Path
) -> None:
    ws = _canary(tmp_path / "home", registered)
    deployments = [{"name": "num", "model": "num@production"}]
    with serve(
        ws.settings.home, deployments, env={"SHIPYARD_ADMIN_TOKEN": TOKEN}, **_config()
    ) as server:
        variants = _drive(server.rest_url, {"baseline": 0.3, "candidate": 0.4}, ws)
        assert variants[-1] == "default"
        with httpx.Client(base_url=server.rest_url) as client:
            body = {
                "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROWS}]
            }
            answer = client.post("/v2/models/num/infer", json=body)
            assert answer.headers["x-shipyard-model-version"] == "2"
    assert ws.rollouts.experiment("num-canary").status == "promoted"
    actions = [d.action for d in ws.rollouts.decisions("num-canary")]
    # The SRM check runs at every look (p < 0.001 each), so a chance hold may come and clear.
    assert [a for a in actions if a != "hold_for_srm"] == ["step", "promote"]
    final = ws.rollouts.decisions("num-canary")[-1].details
    assert final["alias_moved"] == {"alias": "production", "version": 2}
    assert final["step_exposures"] >= 300
    assert ws.registry.resolve_number("num@production") == 2
    ws.close()
