"""Experiment analysis from the event log (shipyard.experiments.analysis) and its HTML report:
summaries against direct NumPy computations, the engine and scipy; outcome de-duplication and
matching; crossed units; SRM; guardrails from exposures; shadow agreement; the report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

from shipyard.core.confidence_sequences import sequential_test
from shipyard.core.experiment_bayes import bayesian_test
from shipyard.core.experiment_stats import MetricSummary, welch_ttest
from shipyard.errors import InvalidInput
from shipyard.experiments.analysis import analyze, summaries
from shipyard.experiments.report import render_html, write_report
from shipyard.experiments.shadow import compare_shadow
from shipyard.experiments.spec import ABTest, Bandit, Canary, Guardrail, Shadow, Step, Variant
from shipyard.experiments.store import Experiment
from shipyard.storage.events import (
    EXPOSURES,
    OUTCOMES,
    PREDICTIONS,
    EventLog,
    ParquetEventLog,
    open_event_log,
)
from shipyard.storage.events.kinds import TIME

Values = Sequence[Any] | np.ndarray[Any, Any]
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
END = T0 + timedelta(hours=6)
AB = ABTest(
    variants=(
        Variant(name="control", model="models:/churn/1"),
        Variant(name="treatment", model="models:/churn/2"),
    ),
    metric="revenue",
)


@pytest.fixture(
    params=[
        pytest.param("parquet", id="parquet"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    url = (
        str(tmp_path / "events")
        if request.param == "parquet"
        else request.getfixturevalue("postgres_url")
    )
    log = open_event_log(url)
    yield log
    log.close()


def experiment(
    strategy: Canary | Shadow | ABTest | Bandit = AB,
    *,
    step: int = -1,
    step_started_at: datetime | None = None,
) -> Experiment:
    return Experiment(
        "exp", "churn", strategy, "salt", "running", step, step_started_at, T0, T0, None
    )


def at(seconds: Values) -> pa.Array:
    return pa.array([T0 + timedelta(seconds=float(s)) for s in seconds], TIME)


def log_exposures(
    log: EventLog,
    *,
    seconds: Values,
    variant: Sequence[str],
    request_id: Sequence[str],
    unit_key: Sequence[str | None] | None = None,
    status: Sequence[int] | None = None,
    latency_ms: Sequence[float] | None = None,
    revision: int | None = None,
) -> None:
    n = len(seconds)
    log.append(
        EXPOSURES,
        pa.table(
            {
                "time": at(seconds),
                "experiment": ["exp"] * n,
                "deployment": ["churn"] * n,
                "variant": list(variant),
                "version": [1] * n,
                "request_id": list(request_id),
                "unit_key": pa.array(unit_key if unit_key is not None else [None] * n, pa.string()),
                "status": pa.array(status if status is not None else [200] * n, pa.int32()),
                "latency_ms": pa.array(
                    latency_ms if latency_ms is not None else [5.0] * n, pa.float64()
                ),
                "revision": pa.array([revision] * n, pa.int64()),
            }
        ),
    )


def log_outcomes(
    log: EventLog,
    *,
    seconds: Sequence[float],
    label: Sequence[float],
    request_id: Sequence[str | None] | None = None,
    unit_key: Sequence[str | None] | None = None,
    idempotency_key: Sequence[str | None] | None = None,
    metric: Sequence[str | None] | None = None,
) -> None:
    n = len(seconds)

    def strings(values: Sequence[str | None] | None) -> pa.Array:
        return pa.array(list(values) if values is not None else [None] * n, pa.string())

    log.append(
        OUTCOMES,
        pa.table(
            {
                "time": at(seconds),
                "model": ["churn"] * n,
                "request_id": strings(request_id),
                "unit_key": strings(unit_key),
                "idempotency_key": strings(idempotency_key),
                "label": pa.array(label, pa.float64()),
                "metric": strings(metric),
            }
        ),
    )


def seeded_ab(log: EventLog, seed: int = 7, units: int = 600) -> dict[str, np.ndarray[Any, Any]]:
    """An A/B test with a known answer: ``units`` units, 1-3 exposures each in one variant,
    revenue outcomes for some units (matched by request id or by unit key, several per unit),
    and the per-unit revenue in each variant computed directly."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, units)
    visits = rng.integers(1, 4, units)
    unit = np.repeat(np.arange(units), visits)
    seconds = rng.uniform(0, 4 * 3600, unit.size)
    names = np.array(["control", "treatment"])[arm[unit]]
    requests = [f"r{i}" for i in range(unit.size)]
    log_exposures(
        log,
        seconds=seconds,
        variant=names.tolist(),
        request_id=requests,
        unit_key=[f"u{u}" for u in unit],
        status=np.where(rng.random(unit.size) < 0.03, 503, 200).tolist(),
        latency_ms=(rng.gamma(2.0, 8.0, unit.size) + 2.0 * arm[unit]).tolist(),
    )
    buyers = np.flatnonzero(rng.random(unit.size) < np.where(arm[unit] == 1, 0.25, 0.2))
    value = rng.exponential(30.0, buyers.size).round(2)
    by_request = rng.random(buyers.size) < 0.5
    log_outcomes(
        log,
        seconds=(seconds[buyers] + 60.0).tolist(),
        label=value.tolist(),
        request_id=[requests[i] if r else None for i, r in zip(buyers, by_request, strict=True)],
        unit_key=[None if r else f"u{unit[i]}" for i, r in zip(buyers, by_request, strict=True)],
        idempotency_key=[f"k{i}" for i in buyers],
        metric=["revenue"] * buyers.size,
    )
    per_unit = np.bincount(unit[buyers], value, minlength=units)
    return {"control": per_unit[arm == 0], "treatment": per_unit[arm == 1]}


# ---------------------------------------------------------------- summaries and tests
def test_summaries_equal_numpy_and_the_tests_equal_the_engine_and_scipy(
    any_log: EventLog,
) -> None:
    per_unit = seeded_ab(any_log)
    figures = summaries(any_log, experiment(), start=T0, end=END)
    assert list(figures.metrics) == ["revenue", "error_rate", "latency_ms"]
    for variant, values in per_unit.items():
        summary = figures.metrics["revenue"][variant]
        assert summary.n == values.size == figures.units[variant]
        assert summary.sum == pytest.approx(values.sum(), rel=1e-12)
        assert summary.sum_squares == pytest.approx(np.dot(values, values), rel=1e-12)
    assert figures.unmatched_outcomes == figures.duplicate_outcomes == figures.crossed_units == 0

    result = analyze(any_log, experiment(), end=END)
    (revenue,) = [r for r in result.results if r.metric == "revenue"]
    control = MetricSummary.from_values(per_unit["control"])
    treatment = MetricSummary.from_values(per_unit["treatment"])
    engine = welch_ttest(control, treatment)
    assert revenue.lift == pytest.approx(engine.estimate, rel=1e-9)
    assert (revenue.ci_low, revenue.ci_high) == pytest.approx((engine.ci_low, engine.ci_high))
    assert revenue.p_value == pytest.approx(engine.p_value, rel=1e-9)
    bayes = bayesian_test(control, treatment)
    assert revenue.chance_to_win == pytest.approx(bayes.chance_to_win, rel=1e-9)
    # the summaries are the per-unit arrays: the absolute lift's test is scipy's Welch test
    absolute = welch_ttest(revenue.control, revenue.treatment, difference="absolute")
    scipy = stats.ttest_ind(per_unit["treatment"], per_unit["control"], equal_var=False)
    assert absolute.statistic == pytest.approx(scipy.statistic, rel=1e-9)
    assert absolute.p_value == pytest.approx(scipy.pvalue, rel=1e-9)
    # Holm over variants × metrics, as statsmodels
    p_values = [r.p_value for r in result.results]
    holm = multipletests(p_values, method="holm")[1]
    assert [r.p_value_holm for r in result.results] == pytest.approx(list(holm), rel=1e-12)
    # the row for the CLI carries the same figures
    row = next(r for r in result.rows() if r["metric"] == "revenue" and r["variant"] == "treatment")
    assert row["lift"] == revenue.lift and row["p_value"] == revenue.p_value
    assert row["n"] == per_unit["treatment"].size


def test_sequential_analysis_uses_the_confidence_sequence(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    per_unit = seeded_ab(log, seed=3)
    result = analyze(log, experiment(), end=END, sequential=True, tuning_n=2000)
    (revenue,) = [r for r in result.results if r.metric == "revenue"]
    expected = sequential_test(
        MetricSummary.from_values(per_unit["control"]),
        MetricSummary.from_values(per_unit["treatment"]),
        tuning_n=2000,
    )
    assert revenue.p_value == pytest.approx(expected.p_value, rel=1e-9)
    assert (revenue.ci_low, revenue.ci_high) == pytest.approx(
        (expected.ci_low, expected.ci_high), rel=1e-9
    )
    assert revenue.ci_low < revenue.welch.ci_low  # the CS is wider than the fixed interval


def test_guardrails_come_from_exposures(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    status = [200, 500, 404, 503, 200, 200, 502, 200]
    latency = [3.0, 7.5, 1.0, 9.0, 2.0, 4.0, 100.0, 6.0]
    variant = ["control"] * 4 + ["treatment"] * 4
    log_exposures(
        log,
        seconds=range(8),
        variant=variant,
        request_id=[f"r{i}" for i in range(8)],
        status=status,
        latency_ms=latency,
    )
    figures = summaries(log, experiment(), start=T0, end=END)
    errors = figures.metrics["error_rate"]
    assert (errors["control"].n, errors["control"].sum) == (4, 2)  # 500 and 503; 404 is not
    assert (errors["treatment"].n, errors["treatment"].sum) == (4, 1)
    assert errors["control"].kind == "proportion"
    for name, values in (("control", latency[:4]), ("treatment", latency[4:])):
        summary = figures.metrics["latency_ms"][name]
        assert summary.mean == pytest.approx(np.mean(values))
        assert summary.variance == pytest.approx(np.var(values, ddof=1))
        assert figures.latency_p50[name] == pytest.approx(np.percentile(values, 50))
        assert figures.latency_p99[name] == pytest.approx(np.percentile(values, 99))
    assert figures.exposures == figures.units == {"control": 4, "treatment": 4}
    document = json.loads(json.dumps(figures.to_dict(), allow_nan=False))
    assert document["metrics"]["error_rate"]["control"] == {
        "n": 4.0,
        "sum": 2.0,
        "sum_squares": 2.0,
        "kind": "proportion",
    }


def test_decisions_follow_each_metrics_direction(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    rng = np.random.default_rng(11)
    n = 4000
    arm = np.arange(n) % 2
    log_exposures(
        log,
        seconds=np.linspace(0, 3600, n).tolist(),
        variant=np.array(["control", "treatment"])[arm].tolist(),
        request_id=[f"r{i}" for i in range(n)],
        latency_ms=(rng.normal(20.0, 2.0, n) + 3.0 * arm).tolist(),  # treatment slower
    )
    bought = np.flatnonzero(rng.random(n) < np.where(arm == 1, 0.4, 0.2))
    log_outcomes(
        log,
        seconds=np.full(bought.size, 3700.0).tolist(),
        label=[1.0] * bought.size,
        request_id=[f"r{i}" for i in bought],
        metric=["revenue"] * bought.size,
    )
    result = analyze(log, experiment(), end=END)
    decisions = {r.metric: r.decision for r in result.results}
    assert decisions == {"revenue": "better", "error_rate": "inconclusive", "latency_ms": "worse"}
    latency = next(r for r in result.results if r.metric == "latency_ms")
    assert latency.chance_to_win < 0.01 and not latency.higher_is_better


# ---------------------------------------------------------------- outcomes
def test_outcomes_are_deduplicated_by_idempotency_key_latest_wins(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(log, seconds=[0, 1], variant=["control", "treatment"], request_id=["a", "b"])
    # the correction is appended first but recorded later: the latest by time counts
    log_outcomes(log, seconds=[300], label=[5.0], request_id=["a"], idempotency_key=["k1"])
    log_outcomes(
        log,
        seconds=[100, 200, 50, 60],
        label=[1.0, 1.0, 2.0, 2.0],
        request_id=["a", "a", "b", "b"],
        idempotency_key=["k1", "k1", None, None],  # no key: every record counts
    )
    figures = summaries(log, experiment(), start=T0, end=END)
    assert figures.metrics["label"]["control"].sum == 5.0
    assert figures.metrics["label"]["treatment"].sum == 4.0
    assert figures.duplicate_outcomes == 2
    assert figures.matched_outcomes == 3 and figures.unmatched_outcomes == 0


def test_outcomes_match_by_request_id_then_unit_key_and_unmatched_are_counted(
    tmp_path: Path,
) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(
        log,
        seconds=[0, 1],
        variant=["control", "treatment"],
        request_id=["r1", "r2"],
        unit_key=["u1", None],  # r2 was assigned at random: its request is its unit
    )
    log_outcomes(
        log,
        seconds=[10, 11, 12, 13, 14, 15],
        label=[1.0, 10.0, 100.0, 1000.0, 1e4, 1e5],
        request_id=["r1", "r2", "r-unknown", "r2", "r-lost", None],
        unit_key=[None, None, "u1", "u1", None, "u-unknown"],
    )
    figures = summaries(log, experiment(), start=T0, end=END)
    label = figures.metrics["label"]
    # r1 and (r-unknown, u1) reach u1; r2 matches by request although it names u1
    assert label["control"].sum == 1.0 + 100.0
    assert label["treatment"].sum == 10.0 + 1000.0
    assert figures.matched_outcomes == 4
    assert figures.unmatched_outcomes == 2  # kept and counted, never dropped silently


def test_outcome_metrics_default_to_every_name_seen_and_units_without_outcomes_count_0(
    tmp_path: Path,
) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(log, seconds=[0, 1, 2], variant=["control"] * 3, request_id=["a", "b", "c"])
    log_outcomes(
        log, seconds=[5, 6], label=[1.0, 3.0], request_id=["a", "b"], metric=[None, "clicks"]
    )
    figures = summaries(log, experiment(), start=T0, end=END)
    assert list(figures.metrics) == ["clicks", "label", "error_rate", "latency_ms"]
    assert figures.metrics["label"]["control"] == MetricSummary(3.0, 1.0, 1.0, "mean")
    only = summaries(log, experiment(), start=T0, end=END, metrics=["clicks", "latency_ms"])
    assert list(only.metrics) == ["clicks", "error_rate", "latency_ms"]


def test_a_unit_seen_in_two_variants_counts_once_in_its_first(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(
        log,
        seconds=[0, 10, 20, 30],
        variant=["control", "treatment", "treatment", "control"],
        request_id=["a", "b", "c", "d"],
        unit_key=["u1", "u1", "u2", "u3"],
    )
    log_outcomes(log, seconds=[40], label=[7.0], request_id=["b"])  # served by treatment
    figures = summaries(log, experiment(), start=T0, end=END)
    assert figures.crossed_units == 1
    assert figures.units == {"control": 2, "treatment": 1}
    assert figures.exposures == {"control": 2, "treatment": 2}
    assert figures.metrics["label"]["control"].sum == 7.0  # u1's outcome goes with u1


# ---------------------------------------------------------------- SRM
def test_srm_flags_a_60_40_split_configured_50_50_and_blocks_decisions(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    variant = ["control"] * 600 + ["treatment"] * 400
    log_exposures(
        log,
        seconds=np.linspace(0, 3600, 1000).tolist(),
        variant=variant,
        request_id=[f"r{i}" for i in range(1000)],
        latency_ms=[5.0 + i % 7 for i in range(600)] + [50.0 + i % 7 for i in range(400)],
    )
    result = analyze(log, experiment(), end=END)
    check = result.srm.check
    assert check is not None and result.srm.flagged
    assert check.p_value == pytest.approx(stats.chisquare([600, 400], [500, 500]).pvalue)
    assert {r.decision for r in result.results} == {"inconclusive"}
    assert result.to_dict()["decisions_blocked_by_srm"] is True
    assert "Sample-ratio mismatch" in render_html(result)

    even = analyze(log, experiment(), end=END, weights=[0.6, 0.4])
    assert not even.srm.flagged
    assert next(r for r in even.results if r.metric == "latency_ms").decision == "worse"


def test_srm_of_a_canary_counts_the_current_step_against_its_weights(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    # step 0 (first hour): 10% candidate; step 1: 50%. Over the whole window 1,000 : 600 is far
    # from 50/50, but within step 1 it is 500 : 500.
    first = ["baseline"] * 500 + ["candidate"] * 100
    second = ["baseline"] * 500 + ["candidate"] * 500
    log_exposures(
        log,
        seconds=np.linspace(0, 3500, 600).tolist() + np.linspace(3700, 7000, 1000).tolist(),
        variant=first + second,
        request_id=[f"r{i}" for i in range(1600)],
    )
    canary = Canary(
        baseline="models:/churn/1",
        candidate="models:/churn/2",
        schedule=(Step(weight=0.1), Step(weight=0.5)),
    )
    step = experiment(canary, step=1, step_started_at=T0 + timedelta(hours=1))
    result = analyze(log, step, end=END)
    assert result.srm.check is not None and result.srm.check.counts == (500, 500)
    assert result.srm.check.weights == (0.5, 0.5) and not result.srm.flagged
    assert result.summaries.units == {"baseline": 1000, "candidate": 600}
    guarded = Canary(
        baseline="models:/churn/1",
        candidate="models:/churn/2",
        weight=0.5,
        guardrails=(Guardrail(metric="latency_ms"), Guardrail(metric="clicks")),
    )
    whole = analyze(log, experiment(guarded), end=END)  # no step: the whole window
    assert whole.srm.check is not None and whole.srm.flagged
    assert whole.metrics == ("clicks", "error_rate", "latency_ms")  # named, though unseen


def test_an_unconfigured_variant_is_a_mismatch_and_weights_must_fit(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(
        log,
        seconds=[0, 1, 2, 3, 4],
        variant=["control", "treatment", "control", "treatment", "rogue"],
        request_id=["a", "b", "c", "d", "e"],
    )
    result = analyze(log, experiment(), end=END)
    assert result.variants == ("control", "treatment", "rogue")
    assert result.srm.check is not None and result.srm.check.weights == (0.5, 0.5, 0.0)
    assert result.srm.flagged  # a unit where no traffic should go
    assert {r["variant"] for r in result.rows()} == {"control", "treatment", "rogue"}
    with pytest.raises(InvalidInput, match="weights has 1 values for 2 variants"):
        analyze(log, experiment(), end=END, weights=[1.0])
    with pytest.raises(InvalidInput, match="timeline_points"):
        analyze(log, experiment(), end=END, timeline_points=0)


def test_bandits_and_shadows_are_not_srm_checked(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    log_exposures(log, seconds=[0, 1], variant=["a", "b"], request_id=["r1", "r2"])
    bandit = Bandit(
        variants=(Variant(name="a", model="m@a"), Variant(name="b", model="m@b")), metric="click"
    )
    result = analyze(log, experiment(bandit), end=END)
    assert result.srm.check is None and "bandit" in result.srm.note
    shadow = Shadow(primary="m@a", candidates=("m@b",))
    assert analyze(log, experiment(shadow), end=END).srm.check is None


# ---------------------------------------------------------------- timeline, JSON, report
def test_timeline_is_cumulative_and_ends_at_the_headline(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    seeded_ab(log, seed=5)
    result = analyze(log, experiment(), end=END, timeline_points=8)
    assert set(result.timeline) == set(result.metrics)
    for r in result.results:
        points = result.timeline[r.metric][r.variant]
        assert len(points) == 8
        times = [p.time for p in points]
        assert times == sorted(times) and times[0] >= T0 and times[-1] <= END
        n = [p.control_n + p.treatment_n for p in points]
        assert n == sorted(n)
        assert (points[-1].lift, points[-1].ci_low, points[-1].ci_high) == pytest.approx(
            (r.lift, r.ci_low, r.ci_high), rel=1e-12
        )
        assert points[-1].treatment_n == r.treatment.n


def test_an_empty_window_analyses_and_reports_without_numbers(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    result = analyze(log, experiment(), end=END, sequential=True)
    assert result.timeline == {}
    assert {r.decision for r in result.results} == {"inconclusive"}
    json.dumps(result.to_dict(), allow_nan=False)
    write_report(result, tmp_path / "empty.html")
    assert "no estimate yet: an arm has fewer than 2 units" in (tmp_path / "empty.html").read_text()


def test_the_report_is_self_contained_with_a_plot_per_metric(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    seeded_ab(log, seed=9)
    log_outcomes(log, seconds=[30], label=[1.0], request_id=["lost"], metric=["revenue"])
    log_outcomes(log, seconds=[30], label=[1.0], request_id=["r0"], metric=["<i>clicks</i>"])
    result = analyze(log, experiment(), end=END)
    path = tmp_path / "reports" / "exp.html"
    path.parent.mkdir()
    write_report(result, path)
    page = path.read_text(encoding="utf-8")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert not re.search(r"https?://|<script|<link|@import|url\(", page)
    assert page.count('<svg class="chart ci"') == len(result.metrics) == 4
    assert page.count('<svg class="chart timeline"') == len(result.metrics)
    assert page.count("<svg") == 2 * len(result.metrics)
    assert "1 unmatched" in page
    assert "<i>" not in page and "&lt;i&gt;clicks&lt;/i&gt;" in page

    document = result.to_dict()
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text)["unmatched_outcomes"] == 1
    assert [m["metric"] for m in document["metrics"]] == [
        "revenue",
        "<i>clicks</i>",
        "error_rate",
        "latency_ms",
    ]
    rows = result.rows()
    json.dumps(rows, allow_nan=False)
    assert {r["decision"] for r in rows if r["variant"] == "treatment"} <= {
        "better",
        "worse",
        "inconclusive",
    }
    assert all(r["decision"] is None for r in rows if r["variant"] == "control")


# ---------------------------------------------------------------- shadows
def log_predictions(
    log: EventLog, variant: str, requests: Sequence[str], outputs: dict[str, Values]
) -> None:
    n = len(requests)
    log.append(
        PREDICTIONS,
        pa.table(
            {
                "time": at([1.0] * n),
                "model": ["churn"] * n,
                "version": [1] * n,
                "variant": [variant] * n,
                "request_id": list(requests),
                "row": pa.array([0] * n, pa.int32()),
                "unit_key": pa.array([None] * n, pa.string()),
                "latency_ms": [1.0] * n,
                **{f"out_{k}": list(v) for k, v in outputs.items()},
            }
        ),
    )


def test_compare_shadow_class_probabilities_by_argmax(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    primary = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    shadow = np.array([[0.8, 0.2], [0.1, 0.9], [0.4, 0.6], [0.3, 0.7]])  # r2 flips
    log_predictions(
        log,
        "primary",
        [f"r{i}" for i in range(5)],
        {"output_0": primary[:, 0], "output_1": primary[:, 1]},
    )
    log_predictions(
        log,
        "shadow-1",
        ["r0", "r1", "r2", "r3"],
        {"output_0": shadow[:, 0], "output_1": shadow[:, 1]},
    )
    log_predictions(log, "shadow-1", ["r9"], {"output_0": [1.0], "output_1": [0.0]})
    result = compare_shadow(log, "churn", start=T0, end=END)
    (candidate,) = result.candidates
    assert result.outputs == ("out_output",)
    assert (candidate.pairs, candidate.primary_only, candidate.shadow_only) == (4, 1, 1)
    assert candidate.agreement_rate == 0.75
    gaps = np.abs(primary[:4] - shadow).max(axis=1)
    assert candidate.difference_p50 == pytest.approx(np.quantile(gaps, 0.5))
    assert candidate.difference_p99 == pytest.approx(np.quantile(gaps, 0.99))
    assert candidate.difference_max == pytest.approx(0.2)
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.rows()[0]["variant"] == "shadow-1"


def test_compare_shadow_regression_within_relative_tolerance(tmp_path: Path) -> None:
    log = ParquetEventLog(tmp_path / "events")
    primary = [1000.0, 0.5, 3.0, -2.0]
    log_predictions(log, "primary", ["a", "b", "c", "d"], {"output": primary})
    near = [1000.0 + 5e-7, 0.5 + 5e-10, 3.0 + 1e-3, -2.0]  # 1e-9 × 1000 allows 5e-7
    log_predictions(log, "shadow-2", ["a", "b", "c", "d"], {"output": near})
    log_predictions(log, "shadow-10", ["a"], {"output": [999.0]})
    log_predictions(log, "candidate", ["a"], {"output": [0.0]})  # not a shadow: ignored
    result = compare_shadow(log, "churn", start=T0, end=END)
    assert [c.variant for c in result.candidates] == ["shadow-2", "shadow-10"]
    second, tenth = result.candidates
    assert second.agreement_rate == 0.75  # c differs by 1e-3 > 1e-9 × 3
    assert second.difference_max == pytest.approx(1e-3)
    assert (tenth.pairs, tenth.agreement_rate, tenth.primary_only) == (1, 0.0, 3)
    assert tenth.difference_max == pytest.approx(1.0)
    empty = compare_shadow(log, "churn", start=END, end=END + timedelta(hours=1))
    assert (empty.primary_rows, empty.candidates) == (0, ())


def test_summaries_of_one_revision_leave_out_exposures_of_the_previous_split(
    tmp_path: Path,
) -> None:
    log = ParquetEventLog(tmp_path / "events")
    # A replica still on revision 3 (the old split) assigns two requests after the step began.
    log_exposures(
        log, seconds=[1, 2], variant=["control", "control"], request_id=["a", "b"], revision=3
    )
    log_exposures(
        log,
        seconds=[3, 4, 5],
        variant=["control", "treatment", "treatment"],
        request_id=["c", "d", "e"],
        revision=4,
    )
    every = summaries(log, experiment(), start=T0, end=END)
    current = summaries(log, experiment(), start=T0, end=END, revision=4)
    assert every.exposures == {"control": 3, "treatment": 2}
    assert current.exposures == {"control": 1, "treatment": 2}
    assert current.units == {"control": 1, "treatment": 2}


def test_latency_p99_is_the_share_beyond_the_controls_p99_and_a_guardrail_can_test_it(
    tmp_path: Path,
) -> None:
    from shipyard.core.rollout_rules import Guardrail, check_guardrail

    rng = np.random.default_rng(11)
    control = rng.gamma(4.0, 2.0, size=3000)
    treatment = rng.gamma(4.0, 2.0, size=3000) * np.where(rng.random(3000) < 0.1, 3.0, 1.0)
    log = ParquetEventLog(tmp_path / "events")
    n = 6000
    log_exposures(
        log,
        seconds=np.arange(n) / 10,
        variant=["control"] * 3000 + ["treatment"] * 3000,
        request_id=[f"r{i}" for i in range(n)],
        latency_ms=[*control, *treatment],
    )
    assert "latency_p99" not in summaries(log, experiment(), start=T0, end=END).metrics
    figures = summaries(log, experiment(), start=T0, end=END, metrics=["latency_p99"])
    threshold = np.percentile(control, 99)
    tail = figures.metrics["latency_p99"]
    assert tail["control"].n == 3000 and tail["control"].sum == np.count_nonzero(
        control > threshold
    )
    assert tail["treatment"].sum == np.count_nonzero(treatment > threshold)
    assert tail["treatment"].kind == "proportion"
    check = check_guardrail(
        Guardrail("latency_p99", "lower", 0.5), tail["control"], tail["treatment"]
    )
    assert check.breached  # ~7% of the candidate's requests beyond a 1% tail
