"""Monitoring end to end: a served model logs its predictions, outcomes arrive through
POST /v1/feedback and `monitor labels load`, and a check finds drift, measures quality against
the training run's baseline, alerts once, and writes the report (Python API and CLI)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from shipyard import Settings, Workspace
from shipyard import monitor as monitoring
from shipyard.cli.monitor import DriftGauges
from shipyard.core.alert_rules import Rule
from shipyard.monitoring.alerts import Alerter
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config

TOKEN = "feedback-token"


def _data(n: int, shift: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"age": rng.normal(40 + shift, 10, n), "income": rng.normal(50, 15, n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(x["age"] - 40) / 8))).astype(int).to_numpy()
    return x, y


@pytest.fixture
def served(tmp_path: Path) -> tuple[Settings, dict[str, int]]:
    settings = Settings(home=tmp_path / "home", admin_token=TOKEN)  # type: ignore[arg-type]
    ws = Workspace(settings)
    x, y = _data(2000, 0, 0)
    model = LogisticRegression().fit(x, y)
    with ws.start_run("churn") as run:
        run.log_metrics({"val_roc_auc": 0.9, "val_accuracy": 0.8})
        ws.register_model("churn", model, input_example=x.head(3), run=run, reference_data=x)
    ws.close()
    state = build_state(
        load_config({"deployments": [{"name": "churn", "model": "churn/1"}]}), settings
    )
    labels: dict[str, int] = {}
    with TestClient(create_app(state)) as client:
        for phase, shift in (("calm", 0), ("drifted", 20)):
            rows, truth = _data(150, shift, 1 if phase == "calm" else 2)
            for i in range(len(rows)):
                response = client.post(
                    "/v1/models/churn:predict",
                    json={"instances": [rows.iloc[i].to_dict()]},
                    headers={"X-Request-ID": f"{phase}-{i}"},
                )
                assert response.status_code == 200, response.text
                labels[f"{phase}-{i}"] = int(truth[i])
        outcomes = [{"request_id": k, "label": v} for k, v in list(labels.items())[:200]]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        stored = client.post(
            "/v1/feedback", json={"model": "churn", "outcomes": outcomes}, headers=auth
        )
        assert stored.status_code == 200 and stored.json()["stored"] == 200
        refused = client.post(
            "/v1/feedback", json={"model": "churn", "request_id": "x", "label": 1}
        )
        assert refused.status_code == 401
        bad = client.post(
            "/v1/feedback",
            json={"model": "churn", "outcomes": [{"request_id": "x", "label": "yes"}]},
            headers=auth,
        )
        assert bad.status_code == 400 and "outcomes[0].label" in bad.json()["error"]
        unknown = client.post(
            "/v1/feedback", json={"model": "nope", "request_id": "x", "label": 1}, headers=auth
        )
        assert unknown.status_code == 404
    return settings, labels  # leaving the client ran the lifespan's end: the log is flushed


def test_a_check_finds_the_drift_measures_quality_and_alerts_once(
    served: tuple[Settings, dict[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = served
    ws = Workspace(settings)
    rules = [
        Rule("inputs drifted", "drift_share", 0.3),
        Rule("auc", "metric_drop", 0.5, metric="roc_auc"),
    ]
    caplog.set_level(logging.WARNING, logger="shipyard.alerts")
    result = monitoring.check(
        ws, "churn", window=timedelta(hours=1), alerter=Alerter(ws.database, rules)
    )
    assert result.rows == 300 and result.version == 1
    assert result.drift is not None and result.drift.drifted_columns == ["age"]
    assert result.drift.prediction_drift
    performance = result.performance
    assert performance is not None and performance["task"] == "binary"
    assert (performance["labelled_rows"], performance["unlabelled_rows"]) == (200, 100)
    assert performance["baseline"] == {"roc_auc": 0.9, "accuracy": 0.8}
    assert [a["rule"] for a in result.alerts] == ["inputs drifted"]
    again = monitoring.check(
        ws, "churn", window=timedelta(hours=1), alerter=Alerter(ws.database, rules)
    )
    assert again.alerts == []  # the same incident: no second alert
    assert [r.getMessage() for r in caplog.records if r.name == "shipyard.alerts"] == [
        f"ALERT {result.alerts[0]['message']}"
    ]
    ws.close()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update({"SHIPYARD_HOME": str(home), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli.app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_loads_labels_checks_and_writes_the_report(
    served: tuple[Settings, dict[str, int]], tmp_path: Path
) -> None:
    settings, labels = served
    rest = list(labels.items())[200:]
    labels_file = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": [k for k, _ in rest], "label": [v for _, v in rest]}).to_csv(
        labels_file, index=False
    )
    loaded = _cli(settings.home, "monitor", "labels", "load", str(labels_file), "--model", "churn")
    assert loaded.returncode == 0, loaded.stderr
    assert "stored 100 outcomes" in loaded.stdout
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: drifted, when: drift_share, above: 0.3}\n")
    report = tmp_path / "out" / "report.html"
    checked = _cli(
        settings.home,
        "monitor",
        "check",
        "--model",
        "churn",
        "--window",
        "1h",
        "--rules",
        str(rules),
        "--report",
        str(report),
        "--json",
    )
    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    assert result["performance"]["labelled_rows"] == 300
    assert [a["rule"] for a in result["alerts"]] == ["drifted"]
    page = report.read_text()
    assert "<svg" in page and "age" in page and "http" not in page.split("</head>")[0]
    bad = _cli(settings.home, "monitor", "check", "--model", "churn", "--window", "soon")
    assert bad.returncode == 2 and "is not a duration" in bad.stderr


def test_reference_set_later_is_used_by_checks_and_run_exports_bounded_gauges(
    served: tuple[Settings, dict[str, int]], tmp_path: Path
) -> None:
    settings, _ = served
    ws = Workspace(settings)
    x, y = _data(500, 0, 5)
    plain = LogisticRegression().fit(x, y)
    version = ws.register_model("plain", plain, input_example=x.head(3))  # no reference data
    assert ws.reference_dir(version) is None
    ws.close()
    reference = tmp_path / "reference.parquet"
    _data(800, 20, 6)[0].to_parquet(reference)  # a reference far from the served data
    done = _cli(settings.home, "monitor", "reference", "set", "churn/1", str(reference))
    assert done.returncode == 0, done.stderr
    assert "800 rows" in done.stdout
    ws = Workspace(settings)
    result = monitoring.check(ws, "churn", window=timedelta(hours=1))
    assert result.drift is not None and result.drift.reference.rows == 800
    assert "age" in result.drift.drifted_columns  # now the calm half drifted against it
    ws.close()

    registry = CollectorRegistry()
    gauges = DriftGauges(registry)
    gauges.update(result)
    worst = next(
        s for s in registry.collect() if s.name == "shipyard_drift_worst_column_score"
    ).samples
    assert len(worst) == 2 and {s.labels["rank"] for s in worst} == {"1", "2"}
    assert (
        registry.get_sample_value("shipyard_drift_share", {"model": "churn"})
        == result.drift.drift_share
    )
    ran = _cli(
        settings.home, "monitor", "run", "--model", "churn", "--every", "1s", "--iterations", "2"
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("churn: 300 predictions") == 2
