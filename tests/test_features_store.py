"""The feature store end to end: versioned definitions, materialisation, online reads, parity with
offline retrieval, the CLI and the server (online route and a feature-fed deployment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from shipyard import Settings, Workspace
from shipyard.errors import ArtifactCorrupted, Conflict, InvalidInput
from shipyard.features import materialize as materialize_module
from shipyard.features.catalog import FeatureCatalog
from shipyard.features.online import FeatureStatus
from shipyard.features.store import FeatureStore
from shipyard.server.app import build_state, create_app
from shipyard.server.config import load_config
from shipyard.storage.online import open_online_store

T0 = datetime(2026, 3, 1, tzinfo=UTC)

DEFINITIONS = """
from datetime import timedelta

from shipyard.features.definitions import (
    Entity, FeatureService, FeatureView, Field, ParquetSource, RequestSource,
    on_demand_feature_view,
)

driver = Entity("driver", join_keys=["driver_id"])
stats = FeatureView(
    "driver_stats",
    entities=[driver],
    features=[Field("conv_rate", "float64"), Field("trips", "int64")EXTRA],
    source=ParquetSource(PATH),
    timestamp_field="event_timestamp",
    created_timestamp_field="created",
    ttl=timedelta(hours=2),
)
trip = RequestSource("trip", [Field("distance_km", "float64")])


@on_demand_feature_view(
    sources=[stats.select("conv_rate"), trip], schema=[Field("score", "float64")]
)
def scored(columns):
    return {"score": columns["conv_rate"] * columns["distance_km"]}


model_v1 = FeatureService("model_v1", [stats.select("conv_rate", "trips"), scored])
"""


def _events(n_drivers: int = 20, hours: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for driver in range(1, n_drivers + 1):
        for hour in range(hours):
            at = T0 + timedelta(hours=hour, minutes=int(rng.integers(0, 60)))
            rows.append(
                {
                    "driver_id": driver,
                    "event_timestamp": at,
                    "created": at + timedelta(seconds=5),
                    "conv_rate": float(rng.random()),
                    "trips": int(rng.integers(0, 100)),
                }
            )
    return pd.DataFrame(rows)


def _write_repo(tmp_path: Path, events: pd.DataFrame, extra: str = "") -> Path:
    data = tmp_path / "events.parquet"
    events.to_parquet(data)
    repo = tmp_path / "features.py"
    repo.write_text(DEFINITIONS.replace("PATH", repr(str(data))).replace("EXTRA", extra))
    return repo


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", user="tester")


@pytest.fixture
def ws(settings: Settings) -> Iterator[Workspace]:
    workspace = Workspace(settings)
    yield workspace
    workspace.close()


def _store(ws: Workspace, clock: Callable[[], datetime]) -> FeatureStore:
    return FeatureStore(
        FeatureCatalog(ws.database, ws.store, user="tester"),
        open_online_store(ws.settings.resolved_online_store_url),
        clock=clock,
    )


# ----------------------------------------------------------------- catalog
def test_apply_versions_changes_and_refuses_breaking_ones(ws: Workspace, tmp_path: Path) -> None:
    events = _events()
    repo = _write_repo(tmp_path, events)
    changes = ws.features.apply_file(repo)
    assert {(c.kind, c.name, c.version, c.action) for c in changes} == {
        ("entity", "driver", 1, "created"),
        ("feature_view", "driver_stats", 1, "created"),
        ("on_demand_feature_view", "scored", 1, "created"),
        ("feature_service", "model_v1", 1, "created"),
    }
    assert {c.action for c in ws.features.apply_file(repo)} == {"unchanged"}

    # Adding a feature is compatible: a new version, no flag needed.
    repo = _write_repo(tmp_path, events.assign(rating=4.5), ', Field("rating", "float64")')
    changes = {c.name: c for c in ws.features.apply_file(repo)}
    assert (changes["driver_stats"].version, changes["driver_stats"].action) == (2, "updated")
    assert changes["model_v1"].action == "unchanged"  # it selects conv_rate and trips only

    # Removing a feature breaks consumers: refused, nothing written, unless asked explicitly.
    repo = _write_repo(tmp_path, events)
    with pytest.raises(Conflict, match=r"feature 'rating' is removed.*--new-version"):
        ws.features.apply_file(repo)
    assert ws.features.catalog.get_definition("feature_view", "driver_stats").version == 2
    changes = {c.name: c for c in ws.features.apply_file(repo, new_version=True)}
    assert (changes["driver_stats"].version, changes["driver_stats"].action) == (3, "breaking")
    record = ws.features.catalog.get_definition("feature_view", "driver_stats")
    assert record.breaking and [f["name"] for f in record.spec["features"]] == [
        "conv_rate",
        "trips",
    ]
    assert [r.version for r in ws.features.catalog.find_definition("driver_stats")] == [3, 2, 1]


def test_dtype_change_is_breaking(ws: Workspace, tmp_path: Path) -> None:
    events = _events()
    ws.features.apply_file(_write_repo(tmp_path, events))
    repo = tmp_path / "features.py"
    repo.write_text(
        repo.read_text().replace('Field("trips", "int64")', 'Field("trips", "float64")')
    )
    with pytest.raises(Conflict, match="'trips' changes dtype from int64 to float64"):
        ws.features.apply_file(repo)


def test_a_new_process_loads_the_applied_file_and_rejects_a_tampered_one(
    settings: Settings, tmp_path: Path
) -> None:
    first = Workspace(settings)
    first.features.apply_file(_write_repo(tmp_path, _events()))
    first.close()
    (tmp_path / "features.py").unlink()  # the server must not need the user's file
    second = Workspace(settings)
    try:
        second.features.load()
        assert sorted(second.features.views) == ["driver_stats", "scored"]
        assert second.features.get_feature_service("model_v1").refs() == [
            "driver_stats:conv_rate",
            "driver_stats:trips",
            "scored:score",
        ]
    finally:
        second.close()
    stored = next((settings.home / "artifacts" / "features").rglob("features.py"))
    stored.write_text(stored.read_text() + "\nimport os  # tampered\n")
    third = Workspace(settings)
    try:
        with pytest.raises(ArtifactCorrupted, match=r"features\.py"):
            third.features.load()
    finally:
        third.close()


# ------------------------------------------------------- materialise + online
def _expected_latest(events: pd.DataFrame, driver: int, at: datetime) -> pd.Series | None:
    """The newest event of ``driver`` at or before ``at`` and within the 2 h TTL."""
    rows = events[
        (events.driver_id == driver)
        & (events.event_timestamp <= at)
        & (events.event_timestamp >= at - timedelta(hours=2))
    ]
    if rows.empty:
        return None
    return rows.sort_values(["event_timestamp", "created"]).iloc[-1]


def test_materialize_then_read_with_statuses_and_ttl_at_read_time(
    ws: Workspace, tmp_path: Path
) -> None:
    events = _events(n_drivers=5, hours=6)
    clock = Clock(T0 + timedelta(hours=6))
    store = _store(ws, clock)
    store.apply_file(_write_repo(tmp_path, events))
    [result] = store.materialize(T0, T0 + timedelta(hours=6))
    assert (result.view, result.version, result.rows_read, result.rows_written) == (
        "driver_stats",
        1,
        5,
        5,
    )
    found = store.get_online_features(
        ["driver_stats:conv_rate", "driver_stats:trips"], {"driver_id": [1, 2, 99]}
    )
    for column in ("conv_rate", "trips"):
        assert found.statuses[column][2] is FeatureStatus.NOT_FOUND
        assert found.values[column][2] is None
    for index, driver in enumerate([1, 2]):
        latest = events[events.driver_id == driver].sort_values("event_timestamp").iloc[-1]
        assert found.values["conv_rate"][index] == latest.conv_rate
        assert found.values["trips"][index] == latest.trips
        assert found.statuses["conv_rate"][index] is FeatureStatus.PRESENT
    # Four hours later every stored value is older than the 2 h TTL: withheld, not served stale.
    clock.now = T0 + timedelta(hours=10)
    late = store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1}])
    assert late.statuses["conv_rate"] == [FeatureStatus.OUTSIDE_TTL]
    assert late.values["conv_rate"] == [None]
    store.close()


def test_materialize_is_idempotent_and_incremental_follows_the_watermark(
    ws: Workspace, tmp_path: Path
) -> None:
    events = _events(n_drivers=8, hours=6)
    clock = Clock(T0 + timedelta(hours=3))
    store = _store(ws, clock)
    store.apply_file(_write_repo(tmp_path, events))
    [first] = store.materialize_incremental()  # first run: from now - ttl
    assert first.start == T0 + timedelta(hours=1) and first.end == T0 + timedelta(hours=3)
    assert store.catalog.watermark("driver_stats", 1) == T0 + timedelta(hours=3)
    [again] = store.materialize(T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert again.rows_written == 0  # rewriting the same rows changes nothing
    clock.now = T0 + timedelta(hours=6)
    [second] = store.materialize_incremental()
    assert second.start == T0 + timedelta(hours=3)
    assert store.catalog.watermark("driver_stats", 1) == T0 + timedelta(hours=6)
    assert store.materialize_incremental() == []  # up to date
    found = store.get_online_features(["driver_stats:conv_rate"], {"driver_id": list(range(1, 9))})
    for index, driver in enumerate(range(1, 9)):
        latest = _expected_latest(events, driver, clock.now - timedelta(microseconds=1))
        assert latest is not None
        assert found.values["conv_rate"][index] == latest.conv_rate
    store.close()


class _FailingWrites:
    """An online store that dies after ``allowed`` write calls (a crash half-way)."""

    def __init__(self, inner: Any, allowed: int) -> None:
        self.inner = inner
        self.allowed = allowed

    def write(self, view: str, rows: Any) -> int:
        if self.allowed == 0:
            raise RuntimeError("killed half-way")
        self.allowed -= 1
        return int(self.inner.write(view, rows))

    def read(self, view: str, keys: Any) -> Any:
        return self.inner.read(view, keys)

    def close(self) -> None:
        self.inner.close()


def test_a_materialization_that_dies_half_way_is_finished_by_running_it_again(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _events(n_drivers=10, hours=3)
    monkeypatch.setattr(materialize_module, "WRITE_BATCH", 3)
    end = T0 + timedelta(hours=3)
    online = open_online_store(ws.settings.resolved_online_store_url)
    catalog = FeatureCatalog(ws.database, ws.store, user="tester")
    crashing = FeatureStore(catalog, _FailingWrites(online, 2), clock=Clock(end))  # type: ignore[arg-type]
    crashing.apply_file(_write_repo(tmp_path, events))
    with pytest.raises(RuntimeError, match="half-way"):
        crashing.materialize_incremental()
    assert catalog.watermark("driver_stats", 1) is None  # not advanced past unwritten rows
    store = FeatureStore(catalog, online, clock=Clock(end))
    store.load()
    [result] = store.materialize_incremental()
    assert result.rows_read == 10 and result.rows_written == 4  # 6 were written before the crash
    found = store.get_online_features(["driver_stats:trips"], {"driver_id": list(range(1, 11))})
    assert found.statuses["trips"] == [FeatureStatus.PRESENT] * 10
    assert catalog.watermark("driver_stats", 1) == end
    store.close()


def test_push_keeps_the_newest_value(ws: Workspace, tmp_path: Path) -> None:
    events = _events(n_drivers=2, hours=2)
    now = T0 + timedelta(hours=2)
    store = _store(ws, Clock(now))
    store.apply_file(_write_repo(tmp_path, events))
    store.materialize(T0, now)
    update = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": [now - timedelta(minutes=1), T0 - timedelta(days=1)],
            "conv_rate": [0.5, 0.25],
            "trips": [7, 8],
        }
    )
    assert store.push("driver_stats", update) == 1  # driver 2's row is older than the stored one
    found = store.get_online_features(["driver_stats:conv_rate"], {"driver_id": [1, 2]})
    latest_2 = events[events.driver_id == 2].sort_values("event_timestamp").iloc[-1]
    assert found.values["conv_rate"] == [0.5, latest_2.conv_rate]
    with pytest.raises(InvalidInput, match="lacks columns \\['trips'\\]"):
        store.push("driver_stats", update.drop(columns=["trips"]))
    store.close()


def test_offline_and_online_give_identical_model_inputs(ws: Workspace, tmp_path: Path) -> None:
    """For the same entities and time, the training set row equals what the server would get."""
    events = _events(n_drivers=30, hours=8, seed=7)
    at = T0 + timedelta(hours=7, minutes=30)
    store = _store(ws, Clock(at))
    store.apply_file(_write_repo(tmp_path, events))
    store.materialize(T0, at + timedelta(microseconds=1))  # the spine time itself is included
    drivers = [*range(1, 31), 404]
    distance = [float(d) / 3 for d in drivers]
    spine = pd.DataFrame({"driver_id": drivers, "event_timestamp": [at] * len(drivers)})
    offline = store.get_historical_features(
        spine.assign(distance_km=distance), "model_v1"
    ).to_pandas()
    online = store.get_online_features(
        "model_v1", {"driver_id": drivers}, request_data={"distance_km": distance}
    ).to_columns()
    assert sorted(online) == ["conv_rate", "score", "trips"]
    for name in online:
        np.testing.assert_array_equal(
            online[name].astype(float), offline[name].to_numpy(dtype=float), err_msg=name
        )
    assert np.isnan(online["conv_rate"][-1])  # entity 404 was never seen: null in both
    for index, driver in enumerate(drivers[:-1]):
        latest = _expected_latest(events, driver, at)
        if latest is None:
            assert np.isnan(online["conv_rate"][index])
        else:
            assert online["conv_rate"][index] == latest.conv_rate
            assert online["score"][index] == latest.conv_rate * distance[index]
    store.close()


# --------------------------------------------------------------------- CLI
def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update({"SHIPYARD_HOME": str(home), "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli.app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_apply_list_show_and_materialize(settings: Settings, tmp_path: Path) -> None:
    repo = _write_repo(tmp_path, _events(n_drivers=3, hours=2))
    home = settings.home
    applied = _cli(home, "features", "apply", str(repo))
    assert applied.returncode == 0, applied.stderr
    assert "driver_stats" in applied.stdout and "created" in applied.stdout
    listed = _cli(home, "features", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {d["name"] for d in json.loads(listed.stdout)} == {
        "driver",
        "driver_stats",
        "scored",
        "model_v1",
    }
    shown = _cli(home, "features", "show", "driver_stats")
    assert shown.returncode == 0 and "conv_rate" in shown.stdout
    window = ["--start", "2026-03-01T00:00:00", "--end", "2026-03-01T02:00:00", "--json"]
    done = _cli(home, "features", "materialize", *window)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert (result["view"], result["rows_read"]) == ("driver_stats", 3)
    bad = _cli(home, "features", "materialize", "--start", "soon", "--end", "x")
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr
    missing = _cli(home, "features", "show", "nope")
    assert missing.returncode == 2 and "'nope' is not applied" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1  # one line, no traceback
    breaking = tmp_path / "features.py"
    breaking.write_text(breaking.read_text().replace('"trips", "int64"', '"trips", "float64"'))
    refused = _cli(home, "features", "apply", str(breaking))
    assert refused.returncode == 2 and "--new-version" in refused.stderr


# ------------------------------------------------------------------ server
@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> tuple[Path, pd.DataFrame, datetime]:
    """A model trained on a training set of the feature service, registered and materialised."""
    events = _events(n_drivers=12, hours=6, seed=3)
    at = T0 + timedelta(hours=6)
    ws = Workspace(settings)
    store = ws.features
    store.apply_file(_write_repo(tmp_path, events))
    spine = pd.DataFrame(
        {
            "driver_id": np.repeat(np.arange(1, 13), 4),
            "event_timestamp": [T0 + timedelta(hours=h + 2) for h in range(4)] * 12,
            "distance_km": np.linspace(1, 20, 48),
        }
    )
    training = store.get_historical_features(spine, "model_v1").to_pandas()
    columns = ["conv_rate", "trips", "score"]
    labels = (training["score"] > training["score"].median()).astype(int)
    model = LogisticRegression().fit(training[columns], labels)
    ws.register_model("eta", model, input_example=training[columns].head(3))
    store.materialize(T0, at)
    ws.close()
    return settings.home, events, at


def test_server_online_features_route_and_a_feature_fed_deployment(
    served: tuple[Path, pd.DataFrame, datetime],
) -> None:
    home, events, at = served
    settings = Settings(home=home)
    deployment = {"name": "eta", "model": "eta/1", "features": "model_v1"}
    state = build_state(load_config({"deployments": [deployment]}), settings)
    state.workspace.features.clock = Clock(at)
    with TestClient(create_app(state)) as client:
        response = client.post(
            "/v1/features/online",
            json={"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1, 999]}},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        latest = events[events.driver_id == 1].sort_values("event_timestamp").iloc[-1]
        assert body["features"]["conv_rate"] == [latest.conv_rate, None]
        assert body["statuses"]["conv_rate"] == ["PRESENT", "NOT_FOUND"]

        bad = client.post("/v1/features/online", json={"features": ["nope:x"], "entities": {}})
        assert bad.status_code == 400 and "entities" in bad.json()["error"]

        v1 = client.post(
            "/v1/models/eta:predict",
            json={"instances": [{"driver_id": 1, "distance_km": 3.0}]},
        )
        assert v1.status_code == 200, v1.text
        ws = Workspace(settings)
        model = ws.load_model("models:/eta/1")
        expected_row = pd.DataFrame(
            {
                "conv_rate": [latest.conv_rate],
                "trips": [latest.trips],
                "score": [latest.conv_rate * 3.0],
            }
        )
        expected = model.predict(expected_row)
        ws.close()
        assert v1.json()["predictions"] == expected.tolist()

        v2 = client.post(
            "/v2/models/eta/infer",
            json={
                "inputs": [
                    {"name": "driver_id", "shape": [1], "datatype": "INT64", "data": [1]},
                    {"name": "distance_km", "shape": [1], "datatype": "FP64", "data": [3.0]},
                ]
            },
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == np.asarray(expected).ravel().tolist()

        no_key = client.post("/v1/models/eta:predict", json={"instances": [{"distance_km": 3.0}]})
        assert no_key.status_code == 400
        assert "driver_id" in no_key.json()["error"]


# ---------------------------------------------------------------- profiles
def test_materialization_and_training_sets_are_validated_against_the_reference(
    ws: Workspace, tmp_path: Path
) -> None:
    events = _events(n_drivers=10, hours=4)
    store = _store(ws, Clock(T0 + timedelta(hours=8)))
    store.apply_file(_write_repo(tmp_path, events))
    [first] = store.materialize(T0, T0 + timedelta(hours=4))
    assert first.reference_set and first.violations == ()
    reference = store.catalog.reference_profile("driver_stats", 1)
    assert reference is not None and reference.column_names == ["conv_rate", "trips"]
    # New events whose conversion rates are far outside anything seen: reported, still written.
    drifted = events.assign(
        event_timestamp=events.event_timestamp + timedelta(hours=4),
        created=events.created + timedelta(hours=4),
        conv_rate=events.conv_rate + 50,
    )
    pd.concat([events, drifted]).to_parquet(tmp_path / "events.parquet")
    [second] = store.materialize(T0 + timedelta(hours=4), T0 + timedelta(hours=8))
    assert not second.reference_set and second.rows_written == 10
    assert [(v["column"], v["code"]) for v in second.violations] == [("conv_rate", "out_of_range")]
    assert "conv_rate" in second.violations[0]["message"]

    spine = pd.DataFrame(
        {"driver_id": [1, 2], "event_timestamp": [T0 + timedelta(hours=3, minutes=59)] * 2}
    )
    clean = store.get_historical_features(spine, ["driver_stats:conv_rate"])
    assert clean.validation is not None and clean.validation.ok
    late = spine.assign(event_timestamp=T0 + timedelta(hours=7, minutes=59))
    flagged = store.get_historical_features(
        late, ["driver_stats:conv_rate"], full_feature_names=True
    )
    assert flagged.validation is not None
    assert [v.column for v in flagged.validation.violations] == ["driver_stats__conv_rate"]
    assert flagged.profile().column_names == [
        "driver_id",
        "event_timestamp",
        "driver_stats__conv_rate",
    ]
    with pytest.raises(InvalidInput, match="lacks features \\['trips'\\]"):
        store.set_reference_profile("driver_stats", drifted[["conv_rate"]])
    store.set_reference_profile("driver_stats", drifted)  # accept the new normal explicitly
    accepted = store.get_historical_features(late, ["driver_stats:conv_rate"]).validation
    assert accepted is not None and accepted.ok
    store.close()
