"""The ``shipyard`` command line, run as a real subprocess against a workspace in ``tmp_path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard import Settings, Workspace

CLI_USER = "cli-tester"


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``shipyard ARGS`` in a child process whose workspace is ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update({"SHIPYARD_HOME": str(home), "SHIPYARD_USER": CLI_USER, "COLUMNS": "200"})
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli.app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_json(home: Path, *args: str) -> Any:
    result = run_cli(home, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, nothing on stdout, one ``error: ...`` line on stderr holding every fragment."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@dataclass(frozen=True)
class Registered:
    home: Path
    run_id: str
    fingerprint: str


def register_models(home: Path) -> Registered:
    """churn v1, v2 (v2 made in a tracked run, aliased production) and fraud v1, via the API."""
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
    target = [0, 0, 0, 1, 1, 1]
    ws = Workspace(Settings(home=home, user="api-tester"))
    try:
        ws.register_model(
            "churn", LogisticRegression(C=0.5).fit(frame, target), input_example=frame
        )
        with ws.start_run("churn-exp", name="second") as run:
            run.log_params({"C": 1.0})
            run.log_metric("auc", 0.75)
            dataset = run.log_dataset(frame, "train")
            ws.register_model(
                "churn", LogisticRegression(C=1.0).fit(frame, target), input_example=frame, run=run
            )
        ws.registry.set_alias("churn", "production", 2, reason="first release")
        ws.register_model("fraud", LogisticRegression().fit(frame, target), input_example=frame)
    finally:
        ws.close()
    return Registered(home, run.run_id, dataset.fingerprint)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """One workspace for the tests that only read it (each changing test builds its own)."""
    return register_models(tmp_path_factory.mktemp("cli") / "home")


def test_help_exits_zero_and_lists_commands(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("init", "runs", "models", "demo"):
        assert command in result.stdout
    nested = run_cli(tmp_path, "models", "alias", "--help")
    assert nested.returncode == 0
    assert "rollback" in nested.stdout


def test_init_creates_the_workspace_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    first = run_json(home, "init")
    assert first["created"] is True
    assert first["home"] == str(home)
    assert (home / "shipyard.db").is_file()
    second = run_json(home, "init")
    assert second["created"] is False
    human = run_cli(home, "init")
    assert human.returncode == 0
    assert str(home) in human.stdout


def test_models_list_show_and_versions_as_json(registered: Registered) -> None:
    setup = registered
    listed = {m["name"]: m for m in run_json(setup.home, "models", "list")}
    assert sorted(listed) == ["churn", "fraud"]
    assert listed["churn"]["latest_version"] == 2
    assert listed["churn"]["aliases"] == {"production": 2}
    datetime.fromisoformat(listed["churn"]["created_at"])

    versions = run_json(setup.home, "models", "versions", "churn")
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["aliases"] == ["production"]
    assert versions[1]["run_id"] == setup.run_id

    by_alias = run_json(setup.home, "models", "show", "churn@production")
    assert (by_alias["version"], by_alias["uri"]) == (2, "models:/churn/2")
    by_number = run_json(setup.home, "models", "show", "models:/churn/1")
    assert (by_number["version"], by_number["aliases"]) == (1, [])
    model = run_json(setup.home, "models", "show", "churn")
    assert model["model"]["aliases"] == {"production": 2}
    assert [v["version"] for v in model["versions"]] == [1, 2]


def test_alias_set_history_rollback_and_time_travel(tmp_path: Path) -> None:
    home = register_models(tmp_path / "home").home
    moved = run_cli(
        home,
        "--verbose",
        "models",
        "alias",
        "set",
        "churn",
        "production",
        "1",
        "--reason",
        "hotfix",
    )
    assert moved.returncode == 0, moved.stderr
    assert "churn@production -> version 1 (was version 2" in moved.stdout
    assert "alias churn@production moved" in moved.stderr  # --verbose shows INFO logs

    history = run_json(home, "models", "alias", "history", "churn", "production")
    assert [(e["previous_version"], e["version"]) for e in history] == [(None, 2), (2, 1)]
    assert history[1]["actor"] == CLI_USER
    assert history[1]["reason"] == "hotfix"
    assert history[1]["action"] == "set"
    first_at = datetime.fromisoformat(history[0]["at"])
    second_at = datetime.fromisoformat(history[1]["at"])
    table = run_cli(home, "models", "alias", "history", "churn")
    assert table.returncode == 0
    assert "hotfix" in table.stdout
    assert CLI_USER in table.stdout

    rolled = run_json(
        home, "models", "alias", "rollback", "churn", "production", "--reason", "undo"
    )
    assert (rolled["previous_version"], rolled["version"]) == (1, 2)
    assert rolled["action"] == "rollback"
    assert run_json(home, "models", "show", "churn@production")["version"] == 2

    between = first_at + (second_at - first_at) / 2
    at = run_json(
        home, "models", "alias", "history", "churn", "production", "--at", between.isoformat()
    )
    assert at["version"] == 2
    before = run_cli(
        home, "models", "alias", "history", "churn", "production", "--at", second_at.isoformat()
    )
    assert before.returncode == 0
    assert "pointed at version 1" in before.stdout
    unset = run_json(
        home, "models", "alias", "history", "churn", "production", "--at", "2000-01-01T00:00:00Z"
    )
    assert unset["version"] is None


def test_archive_is_refused_while_an_alias_points_at_the_version(tmp_path: Path) -> None:
    home = register_models(tmp_path / "home").home
    refused = run_cli(home, "models", "archive", "churn", "2")
    assert_one_line_error(refused, "production")
    archived = run_json(home, "models", "archive", "churn", "1")
    assert archived["status"] == "archived"
    restored = run_json(home, "models", "archive", "churn", "1", "--restore")
    assert restored["status"] == "ready"


def test_runs_list_show_and_lineage(registered: Registered) -> None:
    setup = registered
    runs = run_json(setup.home, "runs", "list", "--experiment", "churn-exp")
    assert [r["run_id"] for r in runs] == [setup.run_id]
    assert run_json(setup.home, "runs", "list", "--experiment", "other") == []

    run = run_json(setup.home, "runs", "show", setup.run_id)
    assert run["params"] == {"C": "1.0"}
    assert run["metrics"] == {"auc": 0.75}
    assert run["status"] == "finished"
    assert run["datasets"][0]["fingerprint"] == setup.fingerprint
    assert run["python_version"]
    datetime.fromisoformat(run["start_time"])
    human = run_cli(setup.home, "runs", "show", setup.run_id)
    assert human.returncode == 0
    assert setup.fingerprint in human.stdout

    lineage = run_json(setup.home, "models", "lineage", "churn@production")
    assert lineage["version"]["version"] == 2
    assert lineage["run"]["run_id"] == setup.run_id
    assert lineage["run"]["params"] == {"C": "1.0"}
    assert lineage["run"]["datasets"][0]["fingerprint"] == setup.fingerprint
    assert "git_commit" in lineage["run"]
    no_run = run_json(setup.home, "models", "lineage", "churn/1")
    assert no_run["run"] is None


def test_unknown_model_is_one_line_listing_the_models_that_exist(registered: Registered) -> None:
    result = run_cli(registered.home, "models", "show", "nope")
    assert_one_line_error(result, "'nope'", "churn", "fraud")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(
            ["models", "lineage", "churn"],
            ["accepted forms", "models:/NAME/VERSION", "models:/NAME@ALIAS"],
            id="bad-uri",
        ),
        pytest.param(
            ["models", "alias", "set", "churn", "production", "two"],
            ["version", "integer"],
            id="non-integer-version",
        ),
        pytest.param(["models", "show", "churn@staging"], ["staging", "production"], id="alias"),
        pytest.param(["models", "archive", "churn", "9"], ["no version 9", "1, 2"], id="version"),
        pytest.param(["runs", "show", "deadbeef"], ["deadbeef"], id="unknown-run"),
        pytest.param(["models", "alias", "set", "churn"], ["'alias'"], id="missing-argument"),
        pytest.param(["modles", "list"], ["modles"], id="unknown-command"),
        pytest.param(["runs", "list", "--limit", "0"], ["--limit"], id="bad-option-value"),
        pytest.param(["models"], ["list", "show", "alias"], id="missing-command"),
        pytest.param(
            ["models", "alias", "history", "churn", "production", "--at", "yesterday"],
            ["--at", "ISO-8601"],
            id="bad-time",
        ),
        pytest.param(
            ["models", "alias", "history", "churn", "production", "--at", "2026-01-01T00:00:00"],
            ["timezone"],
            id="naive-time",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    registered: Registered, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(run_cli(registered.home, *args), *fragments)


@pytest.mark.slow
def test_demo_trains_registers_aliases_and_serves_in_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    result = run_cli(home, "demo")
    assert result.returncode == 0, result.stderr
    assert "models:/breast-cancer@production" in result.stdout
    assert "equal the trained model's predict_proba" in result.stdout
    assert "shipyard models lineage breast-cancer@production" in result.stdout
    assert "point-in-time training set from service 'breast_cancer_v1'" in result.stdout
    assert "(features from 'breast_cancer_v1')" in result.stdout
    assert "200/200 answers equal load_model's" in result.stdout
    assert "400 diagnoses sent back with POST /v1/feedback" in result.stdout
    assert "ALERT inputs drifted: drift_share of model 'breast-cancer'" in result.stdout
    assert (home / "monitoring-report.html").read_text().count("<svg") > 30
    # The canary of version 2: every step recorded, then promoted and the alias moved.
    assert "step 0: step — 'correct' relative change" in result.stdout
    assert "step 1: promote — 'correct' relative change" in result.stdout
    assert "experiment promoted; breast-cancer@production -> version 2" in result.stdout
    features = run_json(home, "features", "list")
    assert {(f["kind"], f["name"]) for f in features} == {
        ("entity", "patient"),
        ("feature_view", "tumour"),
        ("feature_service", "breast_cancer_v1"),
    }
    models = run_json(home, "models", "list")
    assert [m["name"] for m in models] == ["breast-cancer"]
    assert models[0]["aliases"] == {"production": 2}
    lineage = run_json(home, "models", "lineage", "breast-cancer@production")
    assert lineage["run"]["experiment"] == "demo"
    assert lineage["run"]["seed"] == 42
    assert lineage["run"]["metrics"]["test_auc"] > 0.9
    assert [d["name"] for d in lineage["run"]["datasets"]] == ["test", "train", "training_set"]


def test_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(
        {"SHIPYARD_HOME": str(tmp_path), "SHIPYARD_DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}
    )
    result = subprocess.run(
        [sys.executable, "-m", "shipyard.cli.app", "models", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_one_line_error(result, "metadata database", "127.0.0.1:1")
