"""The monitoring report: a self-contained HTML page built from a real drift computation."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.performance import compute_metrics, windowed
from shipyard.monitoring.charts import WindowPoint, distribution_svg, metric_svg, nice_ticks
from shipyard.monitoring.drift import compute_drift
from shipyard.monitoring.report import render_html, render_json

HOSTILE = '<script>alert("x")</script>'
START = datetime(2026, 5, 1, 8, tzinfo=UTC)


def _frames(seed: int, n_ref: int, n_cur: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    countries = [f"c{i:02d}" for i in range(20)]

    def frame(n: int, shift: float, plans: list[float], new_country: bool) -> pd.DataFrame:
        country = rng.choice(countries, n).astype(object)
        if new_country:
            country[: n // 5] = "zz-new"
        return pd.DataFrame(
            {
                "age": rng.normal(40 + shift, 10, n),
                "income": rng.lognormal(10, 0.5, n),
                "plan": rng.choice(["basic", "plus", "pro"], n, p=plans),
                "country": country,
                "active": rng.random(n) < 0.7,
                HOSTILE: rng.normal(0, 1, n),
                "out_output_1": rng.beta(2 + shift / 4, 5, n),
            }
        )

    reference = frame(n_ref, 0.0, [0.6, 0.3, 0.1], False)
    current = frame(n_cur, 8.0, [0.3, 0.3, 0.4], True)
    return reference, current


def _performance(seed: int, windows: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = 200 * windows
    times = START.timestamp() + rng.uniform(0, 3600 * windows, n)
    y = rng.integers(0, 2, n)
    quality = np.clip(1.0 - (times - times.min()) / (3600 * windows), 0.1, 1)  # decays
    score = np.clip(y * 0.5 * quality + rng.random(n) * (1 - 0.5 * quality), 0, 1)
    per_window = windowed("binary", times, y, score, window_s=3600, start_s=START.timestamp())
    baseline = {"accuracy": 0.8, "roc_auc": 0.85, "log_loss": 0.45}
    overall = compute_metrics("binary", y, score)
    return {
        "task": "binary",
        "labelled_rows": n,
        "unlabelled_rows": 120,
        "overall": overall,
        "baseline": baseline,
        "windows": [w.to_dict() for w in per_window],
        "degradations": [
            {
                "metric": "roc_auc",
                "baseline": 0.85,
                "current": overall["roc_auc"],
                "change": (overall["roc_auc"] or 0.0) - 0.85,
                "allowed": 0.05,
                "message": "roc_auc dropped",
            }
        ],
    }


def _check(n_ref: int = 600, n_cur: int = 500, windows: int = 6, seed: int = 0) -> dict[str, Any]:
    reference, current = _frames(seed, n_ref, n_cur)
    drift = compute_drift(reference, current, prediction_columns=["out_output_1"])
    return {
        "model": "churn <b>",
        "version": 3,
        "window": {"start": START.isoformat(), "end": "2026-05-01T14:00:00+00:00"},
        "generated_at": "2026-05-01T14:00:05+00:00",
        "rows": n_cur,
        "drift": drift.to_dict(),
        "multivariate": {
            "auc": 0.71,
            "auc_std": 0.01,
            "threshold": 0.55,
            "drifted": True,
            "top_features": [["age", 0.3], [HOSTILE, 0.05]],
        },
        "performance": _performance(seed, windows),
        "latency_p99_ms": 1.2,
        "error_rate": 0.0,
        "alerts": [
            {
                "rule": "share",
                "when": "drift_share",
                "model": "churn <b>",
                "subject": HOSTILE,
                "value": 0.6,
                "threshold": 0.5,
                "message": f"drift share 0.6 above 0.5 on {HOSTILE}",
                "at": "2026-05-01T14:00:05+00:00",
                "actions": {"log": "ok", "webhook": ["200"]},
            }
        ],
    }


class _Page(HTMLParser):
    """Every start tag with its attributes, the text, and per card (``<section class="card">``):
    its heading's name and first badge, its SVGs, its metric points and baselines, its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.cards: dict[str, dict[str, Any]] = {}
        self.card: dict[str, Any] | None = None
        self.sections = 0  # open sections inside the current card
        self.capture: str | None = None  # "name" or "verdict" while inside those spans

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self.tags.append((tag, attributes))
        if tag == "section" and "card" in classes:
            self.card = {"name": "", "verdict": "", "svg": 0, "points": 0, "baselines": 0}
            self.card["text"] = ""
            self.cards[attributes.get("id") or f"card{len(self.cards)}"] = self.card
        if self.card is None:
            return
        self.sections += tag == "section"
        self.card["svg"] += tag == "svg"
        self.card["points"] += tag == "circle" and "point" in classes
        self.card["baselines"] += tag == "line" and "baseline" in classes
        if tag == "span" and "name" in classes:
            self.capture = "name"
        elif tag == "span" and "badge" in classes and not self.card["verdict"]:
            self.capture = "verdict"

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self.capture = None
        if self.card is not None and tag == "section":
            self.sections -= 1
            if self.sections == 0:
                self.card = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.card is not None:
            self.card["text"] += data
            if self.capture:
                self.card[self.capture] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_the_page_needs_no_network() -> None:
    page = render_html(_check())
    lowered = page.lower()
    for needle in ('src="http', "src='http", 'href="http', "@import", "url(", "<script", "<link"):
        assert needle not in lowered, needle
    parsed = _parse(page)
    for tag, attributes in parsed.tags:
        for name in ("src", "href"):
            value = attributes.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    assert parsed.tags[0][0] == "html"
    assert any(tag == "style" for tag, _ in parsed.tags)
    assert "@media print" in page  # the stylesheet is inlined


def test_every_column_appears_with_its_verdict_and_a_chart() -> None:
    check = _check()
    page = _parse(render_html(check))
    results = check["drift"]["columns"] + check["drift"]["predictions"]
    assert len(results) == 7
    assert any(r["drifted"] for r in results) and not all(r["drifted"] for r in results)
    cards = {
        card["name"]: card
        for cid, card in page.cards.items()
        if cid.startswith(("input-", "output-"))
    }
    assert set(cards) == {r["column"] for r in results}
    for result in results:
        card = cards[result["column"]]
        assert card["verdict"] == ("drift" if result["drifted"] else "no drift")
        assert card["svg"] == 1
        assert result["method"] in card["text"]


def test_columns_are_ranked_drifted_first_then_by_score() -> None:
    check = _check()
    page = _parse(render_html(check))
    columns = check["drift"]["columns"]
    assert {c["method"] for c in columns} == {"ks", "chi2"}  # all tests: score is 1 - p
    expected = sorted(columns, key=lambda c: (not c["drifted"], c["p_value"], -c["psi"]))
    shown = [page.cards[f"input-{i}"]["name"] for i in range(len(columns))]
    assert shown == [c["column"] for c in expected]
    links = [a.get("href") for tag, a in page.tags if tag == "a"]
    assert links[: len(columns)] == [f"#input-{i}" for i in range(len(columns))]
    drifted_rows = [a.get("class") for tag, a in page.tags if tag == "tr" and a.get("class")]
    assert drifted_rows.count("drifted") >= sum(c["drifted"] for c in columns)


def test_hostile_strings_are_escaped() -> None:
    check = _check()
    page = render_html(check)
    assert HOSTILE not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parsed = _parse(page)
    assert not any(tag in ("script", "b") for tag, _ in parsed.tags)
    assert HOSTILE in "".join(parsed.text)  # shown as text, once decoded


def test_hostile_category_names_are_escaped_in_charts() -> None:
    histogram = {"edges": [], "categories": [HOSTILE, "a&b"], "reference": [5, 5, 0]}
    histogram["current"] = [1, 9, 0]
    svg = distribution_svg(histogram, label=HOSTILE)
    assert HOSTILE not in svg and "a&b" not in svg and "a&amp;b" in svg
    parsed = _parse(svg)
    assert [tag for tag, _ in parsed.tags].count("rect") >= 4
    assert not any(tag == "script" for tag, _ in parsed.tags)


def test_the_check_round_trips_through_json() -> None:
    check = _check()
    text = render_json(check)
    assert json.loads(text) == check
    assert render_html(json.loads(json.dumps(check))) == render_html(check)


@pytest.mark.parametrize("windows", [pytest.param(1, id="one"), pytest.param(6, id="six")])
def test_each_metric_chart_has_one_point_per_window(windows: int) -> None:
    check = _check(windows=windows)
    assert len(check["performance"]["windows"]) == windows
    page = _parse(render_html(check))
    metrics = {
        card["name"]: card
        for cid, card in page.cards.items()
        if not cid.startswith(("input-", "output-"))
    }
    assert set(metrics) == {"accuracy", "roc_auc", "log_loss"}
    for card in metrics.values():
        assert card["points"] == windows
        assert card["baselines"] == 1
    assert metrics["roc_auc"]["verdict"] == "degraded"
    assert metrics["log_loss"]["verdict"] in ("not flagged", "degraded")


def test_a_metric_missing_in_a_window_leaves_a_gap_not_a_zero() -> None:
    points = [
        WindowPoint(0, 3600, 0.8, 10),
        WindowPoint(3600, 7200, None, 10),
        WindowPoint(7200, 10800, 0.7, 10),
    ]
    svg = metric_svg("roc_auc", points, 0.85)
    assert svg.count('class="point"') == 2
    assert "<polyline" not in svg  # two single points: nothing to join across the gap
    assert "baseline 0.85" in svg


def test_numeric_bins_are_drawn_as_shares_with_edge_labels() -> None:
    histogram = {
        "edges": [1.0, 2.0, 3.0],
        "categories": [],
        "reference": [10, 10, 10, 10],
        "current": [0, 0, 20, 20],  # a different size: shares, not counts, compare
    }
    svg = distribution_svg(histogram, label="x")
    heights = [float(h) for h in re.findall(r'class="bar (?:ref|cur)"[^>]*height="([0-9.]+)"', svg)]
    assert len(heights) == 8
    ref, cur = heights[0::2], heights[1::2]
    assert ref[0] == pytest.approx(ref[3]) and cur[0] == 0.0
    assert cur[3] == pytest.approx(2 * ref[3], rel=0.02)  # 50% against 25%
    assert all(f">{e}</text>" in svg for e in ("1", "2", "3"))


def test_many_categories_fold_into_other() -> None:
    names = [f"cat{i}" for i in range(30)]
    histogram = {"edges": [], "categories": names, "reference": [10] * 30 + [0]}
    histogram["current"] = [10] * 29 + [300, 0]
    svg = distribution_svg(histogram, label="x")
    assert "cat29" in svg  # the largest current share is kept though it is last
    assert "(18 others)" in svg
    assert svg.count('class="category"') == 13  # 12 shown + other


def test_missing_parts_render_with_a_note() -> None:
    check: Mapping[str, Any] = {
        "model": "churn",
        "version": None,
        "window": {"start": "not a time", "end": None},
        "rows": 0,
        "drift": None,
        "multivariate": None,
        "performance": None,
        "latency_p99_ms": None,
        "error_rate": None,
        "alerts": [],
    }
    page = render_html(check)
    text = " ".join(_parse(page).text)
    assert "Drift was not computed" in text
    assert "domain classifier was not run" in text
    assert "No outcomes were joined" in text
    assert "No alert fired" in text
    assert "<svg" not in page


def test_infinite_statistics_and_empty_histograms_do_not_break_the_page() -> None:
    check = _check()
    column = check["drift"]["columns"][0]
    column.update(statistic="inf", p_value=0.0, histogram={})
    page = render_html(check)
    assert "∞" in page and "no histogram recorded" in page


def test_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0.0, 0.23) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert nice_ticks(0.61, 0.87) == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert nice_ticks(0.5, 0.5)[0] < 0.5 < nice_ticks(0.5, 0.5)[-1]


def test_performance_without_outcomes_yet_is_not_called_healthy() -> None:
    check = _check()
    check["performance"] = {
        "task": "regression",
        "labelled_rows": 0,
        "overall": {"rmse": None, "mae": None},
        "baseline": {},
        "windows": [],
        "degradations": [],
    }
    page = _parse(render_html(check))
    text = " ".join(page.text)
    assert "no outcome has arrived yet" in text
    assert "No window has labelled rows yet" in text
    assert "not flagged" not in text
    assert not any(tag == "circle" for tag, _ in page.tags)
