"""Requests checked against the reference profile a model version was registered with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from shipyard import Settings, Workspace
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config


@pytest.fixture
def home(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {"age": rng.uniform(18, 90, 500), "income": rng.uniform(1e3, 1e5, 500)}
    ).assign(plan=rng.choice(["basic", "pro"], 500))
    labels = (train["age"] > 50).astype(int)
    model = LogisticRegression().fit(train[["age", "income"]], labels)
    ws = Workspace(Settings(home=tmp_path / "home"))
    version = ws.register_model(
        "churn", model, input_example=train[["age", "income"]].head(3), reference_data=train
    )
    profile = ws.reference_profile(version)
    # The reference keeps the model's answers too, named as the prediction log names them.
    assert profile is not None
    assert profile.column_names == ["age", "income", "plan", "out_output_0", "out_output_1"]
    reference = pq.read_table(ws.registry.local_path(version) / "reference.parquet")
    np.testing.assert_array_equal(
        reference.column("out_output_1").to_numpy(),
        model.predict_proba(train[["age", "income"]])[:, 1],
    )
    ws.close()
    return tmp_path / "home"


def _client(home: Path, validation: str) -> TestClient:
    deployment = {"name": "churn", "model": "churn/1", "validation": validation}
    state = build_state(load_config({"deployments": [deployment]}), Settings(home=home))
    return TestClient(create_app(state))


def _violations(client: TestClient) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("shipyard_validation_violations_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_reject_names_the_field_and_in_range_requests_pass(home: Path) -> None:
    with _client(home, "reject") as client:
        ok = client.post(
            "/v1/models/churn:predict", json={"instances": [{"age": 40, "income": 5e4}]}
        )
        assert ok.status_code == 200, ok.text
        bad = client.post(
            "/v1/models/churn:predict", json={"instances": [{"age": 400, "income": 5e4}]}
        )
        assert bad.status_code == 400
        assert "age" in bad.json()["error"] and "range" in bad.json()["error"]
        v2 = client.post(
            "/v2/models/churn/infer",
            json={
                "inputs": [
                    {"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]},
                    {"name": "income", "shape": [1], "datatype": "FP64", "data": [-1e9]},
                ]
            },
        )
        assert v2.status_code == 400 and "income" in v2.json()["error"]


def test_count_serves_and_counts_each_violation(home: Path) -> None:
    with _client(home, "count") as client:
        assert _violations(client) == 0
        response = client.post(
            "/v1/models/churn:predict",
            json={"instances": [{"age": 400, "income": 5e4}, {"age": 30, "income": 5e9}]},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 2
        assert _violations(client) == 2
        metrics = client.get("/metrics").text
        assert 'column="age",expectation="out_of_range",model="churn"' in metrics


def test_off_by_default(home: Path) -> None:
    with _client(home, "off") as client:
        response = client.post(
            "/v1/models/churn:predict", json={"instances": [{"age": 400, "income": 5e4}]}
        )
        assert response.status_code == 200
        assert _violations(client) == 0
