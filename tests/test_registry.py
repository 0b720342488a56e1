"""The registry contract, run on every metadata backend and artifact store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard import Workspace
from shipyard.errors import (
    AliasNotFound,
    ArtifactCorrupted,
    Conflict,
    InvalidInput,
    InvalidURI,
    ModelNotFound,
    VersionNotFound,
)
from shipyard.records import VersionStatus
from shipyard.storage.artifacts import LocalArtifactStore

X = pd.DataFrame({"a": np.linspace(-1, 1, 40), "b": np.cos(np.linspace(0, 6, 40))})
Y = (X["a"] + 0.3 * X["b"] > 0).astype(int)


def _model(c: float = 1.0) -> LogisticRegression:
    return LogisticRegression(C=c).fit(X, Y)


def _register(ws: Workspace, name: str = "churn", c: float = 1.0) -> int:
    return ws.register_model(name, _model(c), input_example=X.head(3)).version


def test_versions_are_numbered_per_name(any_workspace: Workspace) -> None:
    assert [_register(any_workspace) for _ in range(3)] == [1, 2, 3]
    assert _register(any_workspace, "fraud") == 1
    assert [v.version for v in any_workspace.registry.list_versions("churn")] == [1, 2, 3]
    models = any_workspace.registry.list_models()
    assert [(m.name, m.latest_version) for m in models] == [("churn", 3), ("fraud", 1)]


def test_signature_and_metadata_are_stored(any_workspace: Workspace) -> None:
    version = any_workspace.register_model(
        "churn", _model(), input_example=X.head(3), description="first", tags={"team": "growth"}
    )
    assert version.signature["inputs"]["columns"] == [
        {"name": "a", "dtype": "float64"},
        {"name": "b", "dtype": "float64"},
    ]
    assert version.signature["outputs"] == {"dtype": "float64", "shape": [-1, 2]}
    assert version.flavor == "sklearn"
    assert version.description == "first"
    assert version.tags == {"team": "growth"}
    assert version.created_by == "tester"
    assert version.uri == "models:/churn/1"
    pd.testing.assert_frame_equal(any_workspace.input_example(version), X.head(3))


def test_load_model_by_version_alias_and_latest(any_workspace: Workspace) -> None:
    first, second = _model(0.01), _model(100.0)
    any_workspace.register_model("churn", first, input_example=X.head(3))
    any_workspace.register_model("churn", second, input_example=X.head(3))
    any_workspace.registry.set_alias("churn", "production", 1)
    by_alias = any_workspace.load_model("models:/churn@production")
    assert by_alias.version == 1
    np.testing.assert_array_equal(by_alias.predict(X), first.predict_proba(X))
    latest = any_workspace.load_model("models:/churn/latest")
    assert latest.version == 2
    np.testing.assert_array_equal(latest.predict(X), second.predict_proba(X))
    assert any_workspace.load_model("churn/2") is latest  # cached per version
    any_workspace.clear_model_cache()
    assert any_workspace.load_model("churn/2") is not latest


def test_alias_moves_are_recorded_with_who_when_why_and_previous(
    any_workspace: Workspace,
) -> None:
    for _ in range(3):
        _register(any_workspace)
    registry = any_workspace.registry
    registry.set_alias("churn", "production", 1, reason="launch")
    registry.set_alias("churn", "production", 3, reason="better AUC")
    registry.set_alias("churn", "staging", 2)
    history = registry.alias_history("churn", "production")
    assert [(e.version, e.previous_version, e.reason, e.actor, e.action) for e in history] == [
        (1, None, "launch", "tester", "set"),
        (3, 1, "better AUC", "tester", "set"),
    ]
    assert history[0].at <= history[1].at
    assert len(registry.alias_history("churn")) == 3
    assert registry.get_model("churn").aliases == {"production": 3, "staging": 2}
    assert registry.get_version("churn", 3).aliases == ("production",)


def test_alias_version_at_answers_historical_questions(any_workspace: Workspace) -> None:
    for _ in range(2):
        _register(any_workspace)
    registry = any_workspace.registry
    before = datetime.now(UTC) - timedelta(seconds=1)
    registry.set_alias("churn", "production", 1)
    between = registry.alias_history("churn", "production")[-1].at
    registry.set_alias("churn", "production", 2)
    assert registry.alias_version_at("churn", "production", before) is None
    assert registry.alias_version_at("churn", "production", between) == 1
    assert registry.alias_version_at("churn", "production", datetime.now(UTC)) == 2
    with pytest.raises(InvalidInput, match="timezone"):
        registry.alias_version_at("churn", "production", datetime(2026, 3, 3))


def test_rollback_moves_the_alias_back_step_by_step(any_workspace: Workspace) -> None:
    for _ in range(3):
        _register(any_workspace)
    registry = any_workspace.registry
    for version in (1, 2, 3):
        registry.set_alias("churn", "production", version)
    event = registry.rollback("churn", "production", reason="regression")
    assert (event.version, event.previous_version, event.action) == (2, 3, "rollback")
    assert registry.resolve("models:/churn@production").version == 2
    registry.rollback("churn", "production")
    assert registry.resolve("models:/churn@production").version == 1
    with pytest.raises(Conflict, match="no earlier version"):
        registry.rollback("churn", "production")


def test_archive_is_refused_while_an_alias_points_at_the_version(
    any_workspace: Workspace,
) -> None:
    _register(any_workspace)
    _register(any_workspace)
    registry = any_workspace.registry
    registry.set_alias("churn", "production", 1)
    with pytest.raises(Conflict, match="production"):
        registry.archive("churn", 1)
    assert registry.archive("churn", 2).status is VersionStatus.ARCHIVED
    with pytest.raises(Conflict, match="archived"):
        registry.set_alias("churn", "staging", 2)
    assert registry.resolve("models:/churn/latest").version == 1  # archived skipped
    assert registry.archive("churn", 2, archived=False).status is VersionStatus.READY


def test_tags_and_descriptions(any_workspace: Workspace) -> None:
    _register(any_workspace)
    registry = any_workspace.registry
    registry.set_tag("churn", "owner", "ml-team")
    registry.set_tag("churn", "owner", "risk-team")
    registry.set_tag("churn", "validated", "yes", version=1)
    registry.set_description("churn", "predicts churn")
    registry.set_description("churn", "v1 baseline", version=1)
    model = registry.get_model("churn")
    assert (model.tags, model.description) == ({"owner": "risk-team"}, "predicts churn")
    version = registry.get_version("churn", 1)
    assert (version.tags, version.description) == ({"validated": "yes"}, "v1 baseline")


def test_not_found_errors_list_what_exists(any_workspace: Workspace) -> None:
    _register(any_workspace, "churn")
    _register(any_workspace, "fraud")
    any_workspace.registry.set_alias("churn", "production", 1)
    with pytest.raises(ModelNotFound, match="'nope' not found; known models: churn, fraud"):
        any_workspace.load_model("models:/nope/1")
    with pytest.raises(AliasNotFound, match="no alias 'prod'; known aliases: production"):
        any_workspace.load_model("models:/churn@prod")
    with pytest.raises(VersionNotFound, match="no version 7; versions: 1"):
        any_workspace.load_model("models:/churn/7")
    with pytest.raises(InvalidURI, match="accepted forms"):
        any_workspace.load_model("churn")


def test_lineage_links_version_to_run_params_metrics_datasets_and_code(
    any_workspace: Workspace,
) -> None:
    with any_workspace.start_run("churn-exp") as run:
        run.log_params({"C": 1.0})
        run.log_metrics({"auc": 0.91})
        dataset = run.log_dataset(X, "train")
        any_workspace.register_model("churn", _model(), input_example=X.head(2), run=run)
    lineage = any_workspace.lineage("models:/churn/1")
    assert lineage.version.run_id == run.run_id
    assert lineage.run is not None
    assert lineage.run.params == {"C": "1.0"}
    assert lineage.run.metrics == {"auc": 0.91}
    assert lineage.run.datasets == (dataset,)
    assert lineage.run.python_version
    assert "numpy" in lineage.run.packages


def test_changed_artifact_byte_is_refused_before_loading(workspace: Workspace) -> None:
    version = workspace.register_model("churn", _model(), input_example=X.head(2))
    store = workspace.store
    assert isinstance(store, LocalArtifactStore)
    model_file = store.path_of(version.artifact.key) / "model" / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match=r"model/model.joblib"):
        workspace.load_model("models:/churn/1")


def test_register_requires_an_input_example(workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match="input_example is required"):
        workspace.register_model("churn", _model(), input_example=None)
    with pytest.raises(InvalidInput, match="model name"):
        workspace.register_model("../etc", _model(), input_example=X.head(1))


def test_deleting_an_alias_is_part_of_its_history(any_workspace: Workspace) -> None:
    _register(any_workspace)
    registry = any_workspace.registry
    registry.set_alias("churn", "production", 1)
    event = registry.delete_alias("churn", "production", reason="incident")
    assert (event.version, event.previous_version, event.action) == (None, 1, "delete")
    with pytest.raises(AliasNotFound, match="there are no aliases yet"):
        registry.resolve("models:/churn@production")
    assert registry.alias_version_at("churn", "production", event.at) is None
    with pytest.raises(AliasNotFound):
        registry.delete_alias("churn", "production")
    assert registry.rollback("churn", "production").version == 1  # undo the deletion
