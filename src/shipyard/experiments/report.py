"""The experiment report: one :class:`~shipyard.experiments.analysis.ExperimentAnalysis` as a
self-contained HTML page.

The page opens without a network: inline CSS, inline SVG, system fonts, no script. It shows

- a header: experiment, deployment, strategy, status, window, the test used, and tiles for the
  sample-ratio check, units and exposures per variant, the outcomes matched, unmatched and
  ignored as duplicates, and the crossed units; a banner when the SRM check blocks decisions;
- per metric: a table (n, mean, relative lift, interval, p-value, Holm-adjusted p-value, chance
  to win, decision), a CI plot (each variant's lift and interval against the zero line) and the
  cumulative lift over time (line and interval band per variant);
- latency percentiles and error rate per variant, then the definitions in a few lines.

Colours are Okabe–Ito, one per variant in both charts; every point carries a ``<title>`` with
its figures; every string from data is escaped. Charts are drawn here, not with
:mod:`shipyard.monitoring` (services are independent of each other).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path

from shipyard.core.svg import clip, empty_chart, nice_ticks, svg_element
from shipyard.experiments.analysis import ExperimentAnalysis, MetricResult, TimelinePoint

COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DECISION_COLOURS = {"better": "#067647", "worse": "#b42318", "inconclusive": "#4b5563"}
INK, MUTED, GRID = "#1f2937", "#4b5563", "#e5e7eb"
WIDTH = 560
_LEFT = 120.0  # the CI plot's label column
_RIGHT = 92.0  # the CI plot's decision column

CSS = """
:root { --ink: #111827; --muted: #4b5563; --line: #e5e7eb; --panel: #fff; --page: #f6f7f9;
  --head: #f3f4f6; --bad: #b42318; --bad-bg: #fef3f2; --ok: #067647; --ok-bg: #ecfdf3; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 18px; margin: 32px 0 12px; padding-bottom: 6px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 8px; display: flex; gap: 10px; align-items: baseline; }
.name { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
.meta, .note { color: var(--muted); }
.note { font-size: 13px; margin: 6px 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px;
  margin-top: 18px; }
.tile, .card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
.tile .label { font-size: 12px; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); }
.tile .value { font-size: 20px; font-weight: 650; margin: 4px 0 2px; }
.tile .detail { font-size: 13px; color: var(--muted); }
.tile.bad { border-top: 4px solid var(--bad); }
.tile.ok { border-top: 4px solid var(--ok); }
.banner { margin-top: 16px; padding: 10px 14px; border-radius: 8px; color: var(--bad);
  background: var(--bad-bg); border: 1px solid var(--bad); font-weight: 600; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px;
  font-weight: 650; border: 1px solid; white-space: nowrap; }
.badge.better { color: var(--ok); background: var(--ok-bg); }
.badge.worse { color: var(--bad); background: var(--bad-bg); }
.badge.inconclusive, .badge.control { color: var(--muted); background: var(--head); }
.card { margin-bottom: 16px; break-inside: avoid; }
table { border-collapse: collapse; width: 100%; background: var(--panel);
  border: 1px solid var(--line); font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: var(--head); font-size: 12px; font-weight: 650; color: var(--muted); }
td.num, th.num { text-align: right; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
  gap: 16px; margin-top: 12px; }
.charts figure { margin: 0; }
.charts figcaption { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
.chart { display: block; width: 100%; height: auto; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px;
  border-top: 1px solid var(--line); padding-top: 10px; }
@media print { body { background: #fff; } main { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


def write_report(analysis: ExperimentAnalysis, path: Path) -> None:
    """Write the report to ``path`` atomically (a temporary file beside it, then a rename)."""
    page = render_html(analysis)
    path = Path(path)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(page, encoding="utf-8")
        temp.replace(path)  # atomic: os.replace
    finally:
        temp.unlink(missing_ok=True)


def render_html(analysis: ExperimentAnalysis) -> str:
    """The report as one HTML page (module docstring)."""
    colours = {v: COLOURS[i % len(COLOURS)] for i, v in enumerate(analysis.variants)}
    cards = [_metric_card(analysis, metric, colours) for metric in analysis.metrics]
    title = f"Experiment {analysis.experiment}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — shipyard</title><style>{CSS}</style></head><body><main>"
        f"{_header(analysis)}<h2>Metrics</h2>{''.join(cards)}"
        f"{_serving(analysis, colours)}{_definitions(analysis)}"
        f"<footer>shipyard experiment report · analysed up to {escape(_when(analysis.end))}"
        "</footer></main></body></html>"
    )


# ---------------------------------------------------------------- header
def _header(analysis: ExperimentAnalysis) -> str:
    s = analysis.summaries
    test = (
        f"always-valid sequential test (tuning n = {analysis.tuning_n:,.0f})"
        if analysis.sequential
        else "fixed-horizon Welch t-test"
    )
    meta = (
        f"deployment <span class=name>{escape(analysis.deployment)}</span> · "
        f"{escape(analysis.strategy)} · {escape(analysis.status)} · "
        f"{escape(_when(analysis.start))} → {escape(_when(analysis.end))} · {test}, "
        f"{1 - analysis.alpha:.0%} intervals · control "
        f"<span class=name>{escape(analysis.control)}</span>"
    )
    tiles = [
        _srm_tile(analysis),
        _tile("Units", f"{sum(s.units.values()):,}", _split(s.units), None),
        _tile("Exposures", f"{sum(s.exposures.values()):,}", _split(s.exposures), None),
        _tile(
            "Outcomes matched",
            f"{s.matched_outcomes:,}",
            f"{s.unmatched_outcomes:,} unmatched (kept; they may match later) · "
            f"{s.duplicate_outcomes:,} duplicates ignored",
            None,
        ),
        _tile(
            "Crossed units",
            f"{s.crossed_units:,}",
            "seen in more than one variant; counted in their first",
            None,
        ),
    ]
    banner = (
        '<div class="banner">Sample-ratio mismatch: the split does not match the configured '
        "weights, so no decision is taken on these data. Check assignment and logging.</div>"
        if analysis.srm.flagged
        else ""
    )
    return (
        f"<header><h1>Experiment <span class=name>{escape(analysis.experiment)}</span></h1>"
        f'<p class="meta">{meta}</p><div class="tiles">{"".join(tiles)}</div>{banner}</header>'
    )


def _srm_tile(analysis: ExperimentAnalysis) -> str:
    check = analysis.srm.check
    if check is None:
        return _tile("Sample ratio", "not checked", analysis.srm.note, None)
    verdict = "mismatch" if check.flagged else "OK" if sum(check.counts) else "no units yet"
    counts = " : ".join(f"{c:,}" for c in check.counts)
    expected = " : ".join(f"{w:g}" for w in check.weights)
    detail = (
        f"p = {_p(check.p_value)}: {counts} units against weights {expected}; {analysis.srm.note}"
    )
    return _tile("Sample ratio", verdict, detail, not check.flagged)


def _tile(label: str, value: str, detail: str, ok: bool | None) -> str:
    state = "" if ok is None else (" ok" if ok else " bad")
    return (
        f'<div class="tile{state}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="detail">{escape(detail)}</div></div>'
    )


def _split(counts: dict[str, int]) -> str:
    return " · ".join(f"{v} {n:,}" for v, n in counts.items())


# ---------------------------------------------------------------- metrics
def _metric_card(analysis: ExperimentAnalysis, metric: str, colours: dict[str, str]) -> str:
    results = [r for r in analysis.results if r.metric == metric]
    summaries = analysis.summaries.metrics[metric]
    better = "higher" if analysis.higher_is_better(metric) else "lower"
    unit = "exposures" if metric in ("error_rate", "latency_ms") else "units"
    head = ["Variant", unit.capitalize(), "Mean", "Lift", "Interval", "p-value", "Holm p"]
    head += ["Chance to win", "Decision"]
    rows = []
    for variant, summary in summaries.items():
        result = next((r for r in results if r.variant == variant), None)
        cells = [
            f'<td><span class="swatch" style="background:{colours[variant]}"></span>'
            f"<span class=name>{escape(variant)}</span></td>",
            _num_cell(f"{summary.n:,.0f}"),
            _num_cell(_number(summary.mean)),
        ]
        if result is None:
            cells += [_num_cell("—")] * 5 + ['<td><span class="badge control">control</span></td>']
        else:
            cells += [
                _num_cell(_percent(result.lift)),
                _num_cell(_interval(result.ci_low, result.ci_high)),
                _num_cell(_p(result.p_value)),
                _num_cell(_p(result.p_value_holm)),
                _num_cell(_share(result.chance_to_win)),
                f'<td><span class="badge {result.decision}">{result.decision}</span></td>',
            ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(
        f'<th class="num">{h}</th>' if i not in (0, 8) else f"<th>{h}</th>"
        for i, h in enumerate(head)
    )
    band = "confidence sequence" if analysis.sequential else "confidence interval"
    note = _missing(results)
    lifts = ci_plot(results, colours, label=f"{metric}: lift and interval per variant", note=note)
    over_time = timeline_plot(
        analysis.timeline.get(metric, {}),
        colours,
        label=f"{metric}: cumulative lift over time",
        note=note,
    )
    caveat = "" if analysis.sequential else " (each interval valid at its own time only)"
    charts = (
        f'<div class="charts"><figure><figcaption>Relative lift against '
        f"{escape(analysis.control)} with its {1 - analysis.alpha:.0%} {band}</figcaption>"
        f"{lifts}</figure><figure><figcaption>Cumulative lift over time{caveat}</figcaption>"
        f"{over_time}</figure></div>"
    )
    return (
        f'<div class="card"><h3><span class=name>{escape(metric)}</span>'
        f'<span class="meta">{better} is better · per {unit[:-1]}</span></h3>'
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{charts}</div>"
    )


def _missing(results: Sequence[MetricResult]) -> str:
    """Why no lift could be estimated."""
    if any(min(r.control.n, r.treatment.n) < 2 for r in results):
        return "no estimate yet: an arm has fewer than 2 units"
    if any(r.control.mean == 0 for r in results):
        return "no relative lift: the control's mean is 0"
    return "no estimate: the values do not vary"


def _num_cell(text: str) -> str:
    return f'<td class="num">{escape(text)}</td>'


def _serving(analysis: ExperimentAnalysis, colours: dict[str, str]) -> str:
    s = analysis.summaries
    rows = []
    for variant in analysis.variants:
        errors = s.metrics["error_rate"][variant]
        latency = s.metrics["latency_ms"][variant]
        rows.append(
            f'<tr><td><span class="swatch" style="background:{colours[variant]}"></span>'
            f"<span class=name>{escape(variant)}</span></td>"
            + _num_cell(f"{s.exposures[variant]:,}")
            + _num_cell(_share(errors.mean))
            + _num_cell(_number(latency.mean))
            + _num_cell(_number(s.latency_p50[variant]))
            + _num_cell(_number(s.latency_p99[variant]))
            + "</tr>"
        )
    head = "".join(
        f'<th class="num">{h}</th>'
        for h in ("Exposures", "Error rate", "Mean ms", "p50 ms", "p99 ms")
    )
    return (
        "<h2>Serving</h2><table><thead><tr><th>Variant</th>"
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _definitions(analysis: ExperimentAnalysis) -> str:
    notes = [
        "Unit: the exposure's unit key, else its request id; a unit belongs to the variant of "
        "its first exposure. Outcome metrics are summed per unit (0 when none arrived).",
        "Outcomes are de-duplicated by idempotency key (the latest counts) and matched to "
        "exposures by request id, else by unit key; unmatched ones are counted, not dropped.",
        "error_rate (status ≥ 500) and latency_ms are per exposure, in the variant that served it.",
        "Lift is relative (treatment mean / control mean − 1); the fixed-horizon interval is by "
        "the delta method with Welch degrees of freedom; chance to win from the normal model "
        "with a flat prior; Holm p adjusts across variants × metrics. A decision needs the "
        "interval to exclude 0 and no sample-ratio mismatch.",
    ]
    if analysis.sequential:
        notes.append(
            "Sequential: normal-mixture confidence sequences (Fieller's set for the relative lift) "
            "and always-valid p-values, which stay valid however often the experiment is looked "
            "at; they replace the fixed-horizon interval and p-value above."
        )
    return "<h2>Definitions</h2>" + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


# ---------------------------------------------------------------- charts
def ci_plot(
    results: Sequence[MetricResult],
    colours: dict[str, str],
    *,
    label: str,
    note: str = "no estimate yet",
) -> str:
    """Each treatment's lift (point) and interval (line) against a zero line; an unbounded
    end runs to the plot's edge with an arrow. ``note`` is shown when there is no lift."""
    finite = [r.lift for r in results if math.isfinite(r.lift)]
    if not finite:
        return _empty(label, note)
    shown = [0.0, *finite, *(x for r in results for x in (r.ci_low, r.ci_high) if math.isfinite(x))]
    low, high = min(shown), max(shown)
    pad = 0.25 * ((high - low) or 1.0)  # room for the arrow of an unbounded end
    estimated = [r for r in results if math.isfinite(r.lift)]
    low -= pad if any(not math.isfinite(r.ci_low) for r in estimated) else 0.0
    high += pad if any(not math.isfinite(r.ci_high) for r in estimated) else 0.0
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]
    top, row_h = 14.0, max(40.0, 150.0 / len(results))
    height = top + row_h * len(results) + 30.0
    plot_w = WIDTH - _LEFT - _RIGHT

    def x(value: float) -> float:
        return _LEFT + (min(max(value, low), high) - low) / (high - low) * plot_w

    base = height - 24.0
    body = _x_axis(ticks, x, top, base)
    for i, r in enumerate(results):
        y = top + row_h * (i + 0.5)
        colour = colours[r.variant]
        tip = escape(
            f"{r.variant}: lift {_percent(r.lift)}, interval {_interval(r.ci_low, r.ci_high)}, "
            f"p = {_p(r.p_value)}, {r.decision}"
        )
        body.append(
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(clip(r.variant, 16))}'
            "</text>"
        )
        if math.isfinite(r.lift):
            lo = r.ci_low if math.isfinite(r.ci_low) else -math.inf
            hi = r.ci_high if math.isfinite(r.ci_high) else math.inf
            body.append(
                f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="3" stroke-linecap="round"><title>{tip}</title>'
                "</line>"
            )
            if math.isinf(lo):  # an unbounded interval runs off the plot
                body.append(_arrow(x(lo), y, -1, colour))
            if math.isinf(hi):
                body.append(_arrow(x(hi), y, 1, colour))
            body.append(
                f'<circle cx="{x(r.lift):.1f}" cy="{y:.1f}" r="5" fill="{colour}" '
                f'stroke="#fff" stroke-width="1.5"><title>{tip}</title></circle>'
            )
        body.append(
            f'<text x="{WIDTH - _RIGHT + 10}" y="{y + 4:.1f}" '
            f'fill="{DECISION_COLOURS[r.decision]}" font-weight="600">{r.decision}</text>'
        )
    return _svg(height, label, body, "ci")


def timeline_plot(
    timeline: dict[str, tuple[TimelinePoint, ...]],
    colours: dict[str, str],
    *,
    label: str,
    note: str = "no estimate yet",
) -> str:
    """Per treatment the cumulative lift (line) and its interval (band) at each time. The
    vertical range fits the lifts and the final intervals; earlier, wider bands are cut at the
    plot's edges."""
    series = {v: points for v, points in timeline.items() if points}
    lifts = [p.lift for points in series.values() for p in points if math.isfinite(p.lift)]
    if not lifts:
        return _empty(label, note)
    final = [e for points in series.values() for e in (points[-1].ci_low, points[-1].ci_high)]
    shown = [*lifts, *(e for e in final if math.isfinite(e))]
    ticks = nice_ticks(min(0.0, *shown), max(0.0, *shown))
    low, high = ticks[0], ticks[-1]
    times = [p.time.timestamp() for points in series.values() for p in points]
    t0, t1 = min(times), max(times)
    left, right, top, bottom = 52.0, 14.0, 22.0, 26.0
    height = 230.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom

    def x(t: datetime) -> float:
        return left + ((t.timestamp() - t0) / (t1 - t0) if t1 > t0 else 1.0) * plot_w

    def y(value: float) -> float:
        return top + (high - min(max(value, low), high)) / (high - low) * plot_h

    body = []
    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{y(tick) + 3:.1f}" text-anchor="end" '
            f'fill="{MUTED}">{_percent(tick, 0)}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(0.0):.1f}" y2="{y(0.0):.1f}" '
        f'stroke="{INK}" stroke-dasharray="4 3"/>'
    )
    first = next(iter(series.values()))
    for at, anchor in ((first[0].time, "start"), (first[-1].time, "end")):
        body.append(
            f'<text x="{x(at):.1f}" y="{height - 8}" text-anchor="{anchor}" fill="{MUTED}">'
            f"{escape(_when(at))}</text>"
        )
    for i, (variant, points) in enumerate(series.items()):
        colour = colours[variant]
        band = [p for p in points if math.isfinite(p.lift)]
        if band:
            upper = [f"{x(p.time):.1f},{y(_or(p.ci_high, math.inf)):.1f}" for p in band]
            lower = [f"{x(p.time):.1f},{y(_or(p.ci_low, -math.inf)):.1f}" for p in band]
            body.append(
                f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{colour}" '
                'fill-opacity="0.12" stroke="none"/>'
            )
            for edge in (upper, lower):  # tells overlapping bands apart
                body.append(
                    f'<polyline points="{" ".join(edge)}" fill="none" stroke="{colour}" '
                    'stroke-width="1" stroke-dasharray="3 3" stroke-opacity="0.7"/>'
                )
        for segment in _segments(points):
            line = " ".join(f"{x(p.time):.1f},{y(p.lift):.1f}" for p in segment)
            body.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for p in band:
            tip = escape(
                f"{variant} at {_when(p.time)}: lift {_percent(p.lift)}, interval "
                f"{_interval(p.ci_low, p.ci_high)}, n = {p.control_n:,.0f} / {p.treatment_n:,.0f}"
            )
            body.append(
                f'<circle cx="{x(p.time):.1f}" cy="{y(p.lift):.1f}" r="2.5" fill="{colour}">'
                f"<title>{tip}</title></circle>"
            )
        body.append(
            f'<rect x="{left + 4 + 110 * i}" y="4" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 18 + 110 * i}" y="13">{escape(clip(variant, 14))}</text>'
        )
    return _svg(height, label, body, "timeline")


def _segments(points: Sequence[TimelinePoint]) -> list[list[TimelinePoint]]:
    """Runs of consecutive points with a finite lift."""
    runs: list[list[TimelinePoint]] = [[]]
    for p in points:
        if math.isfinite(p.lift):
            runs[-1].append(p)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _x_axis(
    ticks: Sequence[float], x: Callable[[float], float], top: float, base: float
) -> list[str]:
    body = []
    for tick in ticks:
        body.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top}" y2="{base}" '
            f'stroke="{GRID}"/><text x="{x(tick):.1f}" y="{base + 14}" text-anchor="middle" '
            f'fill="{MUTED}">{_percent(tick, 0)}</text>'
        )
    body.append(
        f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{top - 4}" y2="{base}" stroke="{INK}" '
        'stroke-dasharray="4 3"/>'
    )
    return body


def _arrow(x: float, y: float, sign: int, colour: str) -> str:
    tip = x + 6 * sign
    return (
        f'<polygon points="{tip:.1f},{y:.1f} {x:.1f},{y - 5:.1f} {x:.1f},{y + 5:.1f}" '
        f'fill="{colour}"/>'
    )


def _svg(height: float, label: str, body: list[str], cls: str) -> str:
    return svg_element(WIDTH, height, label, body, cls, font_size=11, ink=INK)


def _empty(label: str, note: str) -> str:
    return empty_chart(WIDTH, label, note, font_size=11, ink=INK, grid=GRID, muted=MUTED)


# ---------------------------------------------------------------- formatting
def _or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _percent(value: float, digits: int = 1) -> str:
    if not math.isfinite(value):
        return "—" if math.isnan(value) else ("+∞" if value > 0 else "−∞")
    text = f"{value * 100:+.{digits}f}%"
    return "0%" if float(text[:-1]) == 0 else text.replace("-", "−")


def _share(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "—"


def _interval(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "—"
    return f"[{_percent(low)}, {_percent(high)}]"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"
