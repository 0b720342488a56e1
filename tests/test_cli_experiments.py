"""``shipyard deployments`` and ``shipyard experiments``, and their Python API, on workspaces in
``tmp_path``. The CLI runs in-process through :func:`shipyard.cli.app.main` (what the
``shipyard`` script runs) so that the file stays fast; ``test_cli.py`` covers the real process."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import shipyard
from shipyard import Settings, Workspace
from shipyard.cli.app import main
from shipyard.core.sample_size import plan_mean, plan_proportion
from shipyard.monitor import log_outcomes
from shipyard.storage.events import EXPOSURES, OUTCOMES, PREDICTIONS

CLI_USER = "cli-tester"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


class Cli:
    """``shipyard ARGS`` in this process, on the workspace ``home``."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.code == 0, result.err
        return result.out

    def json(self, *args: str) -> Any:
        return self(*args, "--json").json()

    def workspace(self) -> Workspace:
        return Workspace(Settings(home=self.home, user="api-tester"))


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    """A CLI on a fresh workspace; the root logger is restored after (the CLI configures it)."""
    yield from _cli(tmp_path / "home", monkeypatch, capsys)


def _cli(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    for name in [n for n in os.environ if n.startswith("SHIPYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    monkeypatch.setenv("SHIPYARD_USER", CLI_USER)
    monkeypatch.setenv("COLUMNS", "200")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield Cli(home, capsys)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def models_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """churn v1 and v2 registered (production → 1); tests using it pick their own names."""
    home = tmp_path_factory.mktemp("experiments") / "home"
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    ws = Workspace(Settings(home=home, user="api-tester"))
    try:
        for c in (0.5, 1.0):
            model = LogisticRegression(C=c).fit(frame, [0, 0, 1, 1])
            ws.register_model("churn", model, input_example=frame)
        ws.registry.set_alias("churn", "production", 1)
    finally:
        ws.close()
    return home


@pytest.fixture
def mcli(
    models_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    """A CLI on the workspace with registered models."""
    yield from _cli(models_home, monkeypatch, capsys)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Exit 2, nothing on stdout, one ``error: ...`` line on stderr holding every fragment."""
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ deployments
def test_deployments_set_switch_and_history_round_trip(cli: Cli) -> None:
    state = cli.json("deployments", "set", "churn", "--model", "churn/1", "--reason", "first")
    assert (state["type"], state["revision"]) == ("single", 1)
    assert state["strategy"]["model"] == "models:/churn/1"

    cli.ok("deployments", "blue-green", "churn", "--blue", "churn/1", "--green", "churn/2")
    switched = cli.ok("deployments", "switch", "churn", "--reason", "release 2")
    assert "green (models:/churn/2) is live, revision 3" in switched
    back = cli.json("deployments", "switch", "churn", "--reason", "undo")
    assert (back["strategy"]["live"], back["revision"]) == ("blue", 4)

    shown = cli.json("deployments", "show", "churn")
    assert shown["type"] == "blue_green"
    assert shown["strategy"] == {
        "type": "blue_green",
        "blue": "models:/churn/1",
        "green": "models:/churn/2",
        "live": "blue",
    }
    human = cli.ok("deployments", "show", "churn")
    assert "blue_green" in human
    assert "models:/churn/2" in human

    history = cli.json("deployments", "history", "churn")
    assert [(c["revision"], c["action"], c["reason"]) for c in history] == [
        (4, "switch-blue", "undo"),
        (3, "switch-green", "release 2"),
        (2, "set", None),
        (1, "set", "first"),
    ]
    assert {c["actor"] for c in history} == {CLI_USER}
    assert [c["strategy"].get("live") for c in history] == ["blue", "green", "blue", None]
    assert len(cli.json("deployments", "history", "churn", "--limit", "2")) == 2
    table = cli.ok("deployments", "history", "churn")
    assert "release 2" in table
    assert CLI_USER in table


def test_deployments_set_from_a_file_shows_the_split(cli: Cli, tmp_path: Path) -> None:
    spec = write_yaml(
        tmp_path / "ab.yaml",
        "type: ab_test\n"
        "variants:\n"
        "  - {name: control, model: churn@production}\n"
        "  - {name: treatment, model: churn/2}\n"
        "weights: [0.7, 0.3]\n",
    )
    state = cli.json("deployments", "set", "web", "--file", str(spec))
    assert state["type"] == "ab_test"
    assert state["strategy"]["weights"] == [0.7, 0.3]
    assert [v["name"] for v in state["strategy"]["variants"]] == ["control", "treatment"]
    shown = cli.ok("deployments", "show", "web")
    assert "control=models:/churn@production" in shown


# ------------------------------------------------------------------ experiments
def test_canary_from_flags_create_start_status_and_promote(mcli: Cli) -> None:
    created = mcli.json(
        "experiments",
        "create",
        "canary-1",
        "--deployment",
        "churn-api",
        "--canary",
        "--baseline",
        "churn@production",
        "--candidate",
        "churn/2",
        "--steps",
        "0.05,0.25,0.5,1.0",
        "--min-exposures",
        "500",
        "--min-minutes",
        "10",
        "--guardrail",
        "error_rate:0.0",
        "--guardrail",
        "latency_ms:0.10",
        "--guardrail",
        "revenue:0.05:higher",
        "--metric",
        "converted",
        "--promote-alias",
        "production",
    )
    assert (created["status"], created["type"], created["deployment"]) == (
        "created",
        "canary",
        "churn-api",
    )
    strategy = created["strategy"]
    assert [s["weight"] for s in strategy["schedule"]] == [0.05, 0.25, 0.5, 1.0]
    assert {(s["min_exposures"], s["min_minutes"]) for s in strategy["schedule"]} == {(500, 10.0)}
    assert strategy["guardrails"] == [
        {"metric": "error_rate", "higher_is_better": False, "max_worsening": 0.0},
        {"metric": "latency_ms", "higher_is_better": False, "max_worsening": 0.1},
        {"metric": "revenue", "higher_is_better": True, "max_worsening": 0.05},
    ]
    assert (strategy["metric"], strategy["promote_alias"]) == ("converted", "production")
    assert mcli("deployments", "show", "churn-api").code == 2  # nothing serves it yet

    started = mcli.json("experiments", "start", "canary-1")
    assert (started["experiment"], started["weights"]) == ("canary-1", [0.95, 0.05])
    listed = mcli.ok("experiments", "status")
    assert "canary-1" in listed
    assert "1/4 (5%)" in listed
    assert "running" in listed
    status = mcli.json("experiments", "status", "canary-1")
    assert (status["experiment"]["status"], status["experiment"]["step"]) == ("running", 0)
    assert status["decisions"] == []

    stopped = mcli.json("experiments", "stop", "canary-1", "--promote", "--reason", "looks good")
    assert stopped["strategy"] == {"type": "single", "model": "models:/churn/2"}
    assert stopped["experiment"] is None
    ws = mcli.workspace()
    try:
        assert ws.registry.resolve("churn@production").version == 2
        assert ws.registry.alias_history("churn", "production")[-1].reason == "looks good"
    finally:
        ws.close()
    status = mcli.json("experiments", "status", "canary-1")
    assert status["experiment"]["status"] == "promoted"
    [decision] = status["decisions"]
    assert decision["action"] == "promoted"
    assert decision["details"]["alias_moved"] == {"alias": "production", "version": 2}
    assert decision["details"]["serve"] == "models:/churn/2"
    history = mcli.json("deployments", "history", "churn-api")
    assert [(c["action"], c["reason"]) for c in history] == [
        ("promoted", "looks good"),
        ("start", "experiment canary-1 started"),
    ]
    shown = mcli.ok("experiments", "status", "canary-1")
    assert "promoted" in shown
    assert "alias_moved" in shown


def test_experiment_from_a_file_stops_to_the_control_and_rolls_back(
    cli: Cli, tmp_path: Path
) -> None:
    spec = write_yaml(
        tmp_path / "ab.yaml",
        "type: ab_test\n"
        "variants:\n"
        "  - {name: control, model: churn@production}\n"
        "  - {name: treatment, model: churn/2}\n"
        "metric: converted\n",
    )
    cli.ok("experiments", "create", "ab-1", "-d", "web", "--file", str(spec))
    started = cli.json("experiments", "start", "ab-1")
    assert (started["type"], started["experiment"]) == ("ab_test", "ab-1")
    stopped = cli.json("experiments", "stop", "ab-1")
    assert stopped["strategy"] == {"type": "single", "model": "models:/churn@production"}
    assert cli.json("experiments", "status", "ab-1")["experiment"]["status"] == "stopped"
    assert_one_line_error(cli("experiments", "stop", "ab-1"), "ab-1", "stopped")

    cli.ok("experiments", "create", "ab-2", "-d", "web", "--file", str(spec))
    cli.ok("experiments", "start", "ab-2")
    assert_one_line_error(cli("deployments", "set", "web", "--model", "x/1"), "ab-2")
    rolled = cli.json("experiments", "stop", "ab-2", "--rollback", "--reason", "bad")
    assert rolled["strategy"]["model"] == "models:/churn@production"
    assert cli.json("experiments", "status", "ab-2")["experiment"]["status"] == "rolled_back"
    names = [e["name"] for e in cli.json("experiments", "status", "--deployment", "web")]
    assert names == ["ab-2", "ab-1"]
    assert cli.json("experiments", "status", "--deployment", "elsewhere") == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(
            ["deployments", "set", "d", "--file", "{unknown_type}"], ["'type'"], id="unknown-type"
        ),
        pytest.param(
            ["deployments", "set", "d", "--file", "{weight_2}"], ["'weight'", "1"], id="weight-2"
        ),
        pytest.param(
            [
                "experiments",
                "create",
                "e",
                "-d",
                "d",
                "--canary",
                "--baseline",
                "m/1",
                "--candidate",
                "m/2",
                "--steps",
                "0.5,2",
            ],
            ["schedule.1.weight"],
            id="step-weight-2",
        ),
        pytest.param(
            ["experiments", "create", "e", "--canary", "--baseline", "m/1", "--candidate", "m/2"],
            ["--deployment"],
            id="missing-deployment",
        ),
        pytest.param(
            ["experiments", "create", "e", "-d", "d", "--canary", "--baseline", "m/1"],
            ["'candidate'", "required"],
            id="missing-candidate",
        ),
        pytest.param(["experiments", "start", "nope"], ["'nope'"], id="unknown-experiment"),
        pytest.param(["experiments", "stop", "nope"], ["'nope'"], id="stop-unknown"),
        pytest.param(["experiments", "status", "nope"], ["'nope'"], id="status-unknown"),
        pytest.param(["experiments", "analyze", "nope"], ["'nope'"], id="analyze-unknown"),
        pytest.param(["deployments", "show", "nope"], ["'nope'", "--model"], id="show-unset"),
        pytest.param(["deployments", "switch", "nope"], ["blue_green"], id="switch-no-bg"),
        pytest.param(
            ["deployments", "set", "d", "--model", "not a uri"], ["'model'"], id="bad-uri"
        ),
        pytest.param(["deployments", "set", "d"], ["--file", "--model"], id="set-neither"),
        pytest.param(
            ["deployments", "set", "d", "--file", "{weight_2}", "--model", "m/1"],
            ["--file", "--model"],
            id="set-both",
        ),
        pytest.param(
            ["deployments", "set", "d", "--file", "missing.yaml"], ["missing.yaml"], id="no-file"
        ),
        pytest.param(
            ["deployments", "set", "d", "--file", "{not_a_mapping}"], ["mapping"], id="list-file"
        ),
        pytest.param(
            ["experiments", "create", "e", "-d", "d"], ["--file", "--canary"], id="no-strategy"
        ),
        pytest.param(
            ["experiments", "create", "e", "-d", "d", "--file", "{unknown_type}", "--canary"],
            ["not both"],
            id="file-and-canary",
        ),
        pytest.param(
            ["experiments", "create", "e", "-d", "d", "--file", "{single}"],
            ["canary, shadow, ab_test or bandit"],
            id="single-is-no-experiment",
        ),
        pytest.param(
            [
                "experiments",
                "create",
                "e",
                "-d",
                "d",
                "--canary",
                "--baseline",
                "m/1",
                "--candidate",
                "m/2",
                "--guardrail",
                "error_rate",
            ],
            ["--guardrail", "METRIC:MAX_WORSENING"],
            id="bad-guardrail",
        ),
        pytest.param(
            [
                "experiments",
                "create",
                "e",
                "-d",
                "d",
                "--canary",
                "--baseline",
                "m/1",
                "--candidate",
                "m/2",
                "--steps",
                "0.1,half",
            ],
            ["--steps"],
            id="bad-steps",
        ),
        pytest.param(
            ["experiments", "plan", "--baseline", "0.1", "--mde", "0"], ["mde"], id="plan-mde-0"
        ),
        pytest.param(
            ["experiments", "plan", "--baseline", "1.5", "--mde", "0.05"],
            ["baseline"],
            id="plan-rate-above-1",
        ),
        pytest.param(
            ["experiments", "compare", "d", "--window", "soon"], ["--window"], id="bad-window"
        ),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    cli: Cli, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    files = {
        "unknown_type": "type: blue\nmodel: m/1\n",
        "weight_2": "type: canary\nbaseline: m/1\ncandidate: m/2\nweight: 2\n",
        "not_a_mapping": "- type: single\n",
        "single": "type: single\nmodel: m/1\n",
    }
    paths = {key: write_yaml(tmp_path / f"{key}.yaml", text) for key, text in files.items()}
    filled = [a.format(**paths) if a.startswith("{") else a for a in args]
    assert_one_line_error(cli(*filled), *fragments)


def test_stop_refuses_contradictions_and_changes_nothing(cli: Cli) -> None:
    cli.ok(
        "experiments",
        "create",
        "c",
        "-d",
        "web",
        "--canary",
        "--baseline",
        "m/1",
        "--candidate",
        "m/2",
        "--weight",
        "0.1",
    )
    cli.ok("experiments", "start", "c")
    assert_one_line_error(cli("experiments", "stop", "c", "--promote", "--rollback"), "both")
    assert_one_line_error(cli("experiments", "stop", "c", "--variant", "x"), "promoting")
    # m/2 is not a registered model: promoting it fails before anything changes
    assert_one_line_error(cli("experiments", "stop", "c", "--promote"), "'m'")
    state = cli.json("deployments", "show", "web")
    assert (state["experiment"], state["weights"]) == ("c", [0.9, 0.1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--baseline", "0.10", "--mde", "0.05"],
            plan_proportion(0.10, 0.05),
            id="proportion",
        ),
        pytest.param(
            ["--baseline", "0.03", "--mde", "-0.1", "--power", "0.9", "--alpha", "0.01"],
            plan_proportion(0.03, -0.1, power=0.9, alpha=0.01),
            id="proportion-options",
        ),
        pytest.param(  # three variants: two comparisons, alpha split in two (Bonferroni)
            ["--baseline", "0.10", "--mde", "0.05", "--variants", "3"],
            plan_proportion(0.10, 0.05, alpha=0.025),
            id="three-variants",
        ),
        pytest.param(
            ["--baseline", "12", "--sd", "30", "--mde", "0.02", "--difference", "absolute"],
            plan_mean(12.0, 30.0, 0.02, difference="absolute"),
            id="mean",
        ),
    ],
)
def test_plan_prints_the_sample_size_planner_numbers(
    cli: Cli, args: list[str], expected: Any
) -> None:
    document = cli.json("experiments", "plan", *args)
    variants = document["variants"]
    assert document["n_per_variant"] == expected.n_per_variant
    assert document["n_exact"] == pytest.approx(expected.n_exact, rel=1e-12)
    assert document["n_total"] == expected.n_per_variant * variants
    assert document["alpha_per_comparison"] == pytest.approx(expected.alpha)
    human = cli.ok("experiments", "plan", *args)
    assert str(expected.n_per_variant) in human
    assert str(expected.n_per_variant * variants) in human


# ------------------------------------------------------------------ analysis
UNITS = 60  # per variant
CONVERTED = {"control": 12, "treatment": 18}  # units with a conversion outcome


def exposures(
    experiment: str, deployment: str, variants: dict[str, int], revision: int | None = None
) -> pa.Table:
    """One exposure per unit (``u-<variant>-<i>``, request ``r-<variant>-<i>``), all status
    200 except the treatment's first three (500), latency 10 ms (control) / 12 ms, assigned
    under deployment ``revision``."""
    rows = [(variant, i) for variant, count in variants.items() for i in range(count)]
    now = datetime.now(UTC)
    return pa.table(
        {
            "time": pa.array([now] * len(rows), pa.timestamp("us", tz="UTC")),
            "experiment": [experiment] * len(rows),
            "deployment": [deployment] * len(rows),
            "variant": [v for v, _ in rows],
            "version": pa.array([1 if v == "control" else 2 for v, _ in rows], pa.int64()),
            "request_id": [f"r-{v}-{i}" for v, i in rows],
            "unit_key": [f"u-{v}-{i}" for v, i in rows],
            "status": pa.array(
                [500 if v == "treatment" and i < 3 else 200 for v, i in rows], pa.int32()
            ),
            "latency_ms": [10.0 if v == "control" else 12.0 for v, _ in rows],
            "revision": pa.array([revision] * len(rows), pa.int64()),
        }
    )


def test_analyze_prints_tables_and_writes_json_and_html(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_yaml(
        tmp_path / "ab.yaml",
        "type: ab_test\n"
        "variants:\n"
        "  - {name: control, model: m/1}\n"
        "  - {name: treatment, model: m/2}\n"
        "metric: converted\n",
    )
    cli.ok("experiments", "create", "ab", "-d", "web", "--file", str(spec))
    cli.ok("experiments", "start", "ab")
    ws = cli.workspace()
    try:
        ws.events.append(EXPOSURES, exposures("ab", "web", dict.fromkeys(CONVERTED, UNITS)))
        log_outcomes(
            ws,
            "web",
            [
                {"unit_key": f"u-{variant}-{i}", "label": 1.0, "metric": "converted"}
                for variant, count in CONVERTED.items()
                for i in range(count)
            ],
        )
        # through the Python API: by request id, a duplicate (same idempotency key) and one
        # whose exposure is unknown
        shipyard.use_workspace(ws)
        for _ in range(2):
            shipyard.log_outcome(
                "web",
                request_id="r-control-59",
                value=1.0,
                metric="converted",
                idempotency_key="k-59",
            )
        shipyard.log_outcome("web", request_id="r-elsewhere", value=1.0, metric="converted")
    finally:
        shipyard.use_workspace(None)
        ws.close()

    document = cli("experiments", "analyze", "ab", "--json", "-").json()
    assert document["units"] == {"control": UNITS, "treatment": UNITS}
    assert (document["duplicate_outcomes"], document["unmatched_outcomes"]) == (1, 1)
    metrics = {m["metric"]: m for m in document["metrics"]}
    converted = metrics["converted"]
    means = {v: s["mean"] for v, s in converted["variants"].items()}
    # the control gained one conversion (u-control-59 by request id, counted once)
    assert means == pytest.approx({"control": 13 / UNITS, "treatment": 18 / UNITS})
    [comparison] = converted["comparisons"]
    assert comparison["lift"] == pytest.approx(18 / 13 - 1)
    assert metrics["error_rate"]["variants"]["treatment"]["mean"] == pytest.approx(3 / UNITS)
    assert metrics["latency_ms"]["variants"]["control"]["mean"] == pytest.approx(10.0)

    out_json, out_html = tmp_path / "out" / "analysis.json", tmp_path / "out" / "report.html"
    printed = cli.ok(
        "experiments", "analyze", "ab", "--json", str(out_json), "--html", str(out_html)
    )
    for fragment in ("converted", "error_rate", "latency_ms", "treatment", "+38.46%"):
        assert fragment in printed  # 18/13 − 1 = +38.46%
    assert "1 unmatched, 1 duplicates ignored" in printed
    written = json.loads(out_json.read_text(encoding="utf-8"))
    assert written["units"] == document["units"]
    assert "<svg" in out_html.read_text(encoding="utf-8")

    sequential = cli("experiments", "analyze", "ab", "--sequential", "--json", "-").json()
    assert sequential["sequential"] is True
    [seq] = {m["metric"]: m for m in sequential["metrics"]}["converted"]["comparisons"]
    assert seq["lift"] == pytest.approx(comparison["lift"])
    # the always-valid interval (None: unbounded) holds the fixed-horizon one at the same data
    low, high = seq["ci_low"], seq["ci_high"]
    assert (-math.inf if low is None else low) <= comparison["ci_low"]
    assert (math.inf if high is None else high) >= comparison["ci_high"]
    assert seq["p_value"] >= comparison["p_value"]


def test_compare_reports_shadow_agreement(cli: Cli) -> None:
    now = datetime.now(UTC)
    primary = [0.1 * i for i in range(10)]
    shadow = [*primary[:8], 5.0, 6.0]  # the last two disagree
    ws = cli.workspace()
    try:
        ws.events.append(
            PREDICTIONS,
            pa.table(
                {
                    "time": pa.array([now] * 20, pa.timestamp("us", tz="UTC")),
                    "model": ["web"] * 20,
                    "version": pa.array([1] * 10 + [2] * 10, pa.int64()),
                    "variant": ["primary"] * 10 + ["shadow-1"] * 10,
                    "request_id": [f"r{i}" for i in range(10)] * 2,
                    "row": pa.array([0] * 20, pa.int32()),
                    "latency_ms": [1.0] * 20,
                    "out_output": primary + shadow,
                }
            ),
        )
    finally:
        ws.close()
    document = cli.json("experiments", "compare", "web", "--window", "1h")
    [candidate] = document["candidates"]
    assert (candidate["variant"], candidate["pairs"]) == ("shadow-1", 10)
    assert candidate["agreement_rate"] == pytest.approx(0.8)
    assert candidate["difference_max"] == pytest.approx(6.0 - 0.9)
    printed = cli.ok("experiments", "compare", "web")
    assert "shadow-1" in printed
    assert "80.0%" in printed
    assert "no shadow predictions" in cli.ok("experiments", "compare", "other")


def test_step_walks_a_canary_to_its_next_step(mcli: Cli) -> None:
    mcli.ok(
        "experiments",
        "create",
        "canary-step",
        "-d",
        "step-api",
        "--canary",
        "--baseline",
        "churn/1",
        "--candidate",
        "churn/2",
        "--steps",
        "0.2,1.0",
        "--min-exposures",
        "50",
    )
    revision = mcli.json("experiments", "start", "canary-step")["revision"]
    assert "nothing changed" in mcli.ok("experiments", "step", "canary-step")
    ws = mcli.workspace()
    try:  # 80/20 as configured: no sample-ratio mismatch, and the minimum of 50 is met
        ws.events.append(
            EXPOSURES,
            exposures("canary-step", "step-api", {"baseline": 80, "candidate": 20}, revision),
        )
    finally:
        ws.close()
    stepped = mcli.json("experiments", "step", "canary-step")
    assert stepped["action"] == "step"
    assert stepped["deployment"]["weights"] == [0.0, 1.0]
    status = mcli.json("experiments", "status", "canary-step")
    assert status["experiment"]["step"] == 1
    assert [d["action"] for d in status["decisions"]] == ["step"]


# ------------------------------------------------------------------ Python API
def test_python_api_runs_an_experiment(models_home: Path) -> None:
    ws = Workspace(Settings(home=models_home, user="api-tester"))
    shipyard.use_workspace(ws)
    try:
        state = shipyard.set_deployment_strategy(
            "sdk-api", {"type": "single", "model": "churn/1"}, reason="first"
        )
        assert (state.revision, state.strategy.type) == (1, "single")
        experiment = shipyard.create_experiment(
            "sdk-ab",
            "sdk-api",
            {
                "type": "ab_test",
                "variants": [
                    {"name": "a", "model": "churn/1"},
                    {"name": "b", "model": "churn@production"},
                ],
            },
        )
        assert experiment.status == "created"
        running = shipyard.start_experiment("sdk-ab")
        assert running.experiment == "sdk-ab"
        with pytest.raises(shipyard.Conflict, match="sdk-ab"):
            shipyard.set_deployment_strategy("sdk-api", {"type": "single", "model": "churn/2"})
        with pytest.raises(shipyard.InvalidInput, match="finite number"):
            shipyard.log_outcome("sdk-api", request_id="r1", value=math.nan)
        with pytest.raises(shipyard.InvalidInput, match="request_id or a unit_key"):
            shipyard.log_outcome("sdk-api", value=1.0)
        assert shipyard.log_outcome("sdk-api", unit_key="u1", value=2.5, metric="revenue") == 1
        stored = ws.events.read(
            OUTCOMES, "sdk-api", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)
        )
        assert stored.select(["unit_key", "label", "metric"]).to_pylist() == [
            {"unit_key": "u1", "label": 2.5, "metric": "revenue"}
        ]
        analysis = shipyard.analyze_experiment("sdk-ab")
        assert analysis.experiment == "sdk-ab"
        assert analysis.unmatched_outcomes == 1  # no exposure of u1 was logged
        production = ws.registry.resolve("churn@production").version
        promoted = shipyard.stop_experiment("sdk-ab", promote=True)
        # b is promoted, pinned to the version its alias named
        assert promoted.strategy.model_dump() == {
            "type": "single",
            "model": f"models:/churn/{production}",
        }
        assert ws.rollouts.experiment("sdk-ab").status == "promoted"
    finally:
        shipyard.use_workspace(None)
        ws.close()
