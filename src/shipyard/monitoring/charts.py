"""Inline SVG charts for the monitoring report: distributions and metrics over time.

Pure string building: no I/O and no external resource — each function returns one ``<svg>``
element that renders offline, every label escaped with :func:`html.escape`. Colours are the
Okabe–Ito blue (reference) and vermillion (current), told apart with the common colour-vision
deficiencies and in greyscale print; each bar and point carries a ``<title>`` with its exact
figures, and each chart an ``aria-label``.

- :func:`distribution_svg`: reference vs current shares of a drift result's histogram
  (:class:`shipyard.core.drift.Histogram` as a dict) — vertical bars per bin with the bin edges
  below for numeric columns (the bins are reference deciles, so the reference bars sit near 10%
  and the current ones show where the values moved), horizontal bars per category otherwise (the
  :data:`MAX_CATEGORIES_SHOWN` largest on either side, the rest summed as "other").
- :func:`metric_svg`: one metric per window as a line with one point per window, the baseline
  as a dashed line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any, NamedTuple

from shipyard.core.svg import clip, empty_chart, nice_ticks, svg_element

REFERENCE_COLOUR = "#0072B2"
CURRENT_COLOUR = "#D55E00"
TEXT_COLOUR = "#1f2937"
MUTED_COLOUR = "#4b5563"
GRID_COLOUR = "#e5e7eb"
BASELINE_COLOUR = "#111827"
WIDTH = 560
MAX_CATEGORIES_SHOWN = 12
_CHAR_PX = 6.0  # approximate width of one character at the 10px label size
_LABEL_CHARS = 18


class WindowPoint(NamedTuple):
    """One window of a metric: ``[start_s, end_s)`` in epoch seconds, the value (None: not
    defined there, e.g. ROC AUC with one class) and the labelled rows it was computed on."""

    start_s: float
    end_s: float
    value: float | None
    rows: int


# ---------------------------------------------------------------- formatting
def short_number(value: float) -> str:
    """A compact label: 3 significant digits, k/M/G above 10,000 (``12.3k``)."""
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞" if value < 0 else "NaN"
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    if size >= 1000:
        return f"{value:.0f}"
    if size != 0 and size < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _share_label(share: float) -> str:
    return f"{share:.0%}" if share >= 0.1 or share == 0 else f"{share:.1%}"


def _svg(width: float, height: float, label: str, body: list[str], cls: str) -> str:
    return svg_element(width, height, label, body, cls, font_size=10, ink=TEXT_COLOUR)


def _empty(label: str, note: str) -> str:
    return empty_chart(
        WIDTH, label, note, font_size=10, ink=TEXT_COLOUR, grid=GRID_COLOUR, muted=MUTED_COLOUR
    )


def _legend(x: float, y: float, reference_n: int, current_n: int) -> str:
    parts = []
    for offset, colour, name, n in (
        (0, REFERENCE_COLOUR, "reference", reference_n),
        (130, CURRENT_COLOUR, "current", current_n),
    ):
        parts.append(
            f'<rect x="{x + offset}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + offset + 14}" y="{y + 1}">{name} (n={n:,})</text>'
        )
    return "".join(parts)


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


# ---------------------------------------------------------------- distributions
def distribution_svg(histogram: Mapping[str, Any], *, label: str) -> str:
    """Reference vs current shares of one column's drift histogram (see the module docstring);
    ``label`` names the chart for screen readers."""
    reference = [int(c) for c in histogram.get("reference") or ()]
    current = [int(c) for c in histogram.get("current") or ()]
    categories = [str(c) for c in histogram.get("categories") or ()]
    edges = [float(e) for e in histogram.get("edges") or ()]
    if not reference or len(reference) != len(current) or not sum(reference) or not sum(current):
        return _empty(label, "no histogram recorded")
    if categories:
        if len(reference) != len(categories) + 1:
            return _empty(label, "histogram does not match its categories")
        return _categorical(categories, reference, current, label)
    if len(reference) != len(edges) + 1:
        return _empty(label, "histogram does not match its bin edges")
    return _numeric(edges, reference, current, label)


def _bin_name(edges: Sequence[float], index: int) -> str:
    if not edges:
        return "all values"
    if index == 0:
        return f"< {short_number(edges[0])}"
    if index == len(edges):
        return f"≥ {short_number(edges[-1])}"
    return f"[{short_number(edges[index - 1])}, {short_number(edges[index])})"


def _numeric(edges: list[float], reference: list[int], current: list[int], label: str) -> str:
    labels = [short_number(e) for e in edges]
    bins = len(reference)
    left, right, top = 44.0, 10.0, 26.0
    plot_w = WIDTH - left - right
    bin_w = plot_w / bins
    widest = max((len(t) for t in labels), default=0) * _CHAR_PX
    staggered = widest > bin_w * 0.9
    bottom = 44.0 if staggered else 30.0
    height = 190.0 + (bottom - 30.0)
    plot_h = height - top - bottom
    ref_shares, cur_shares = _shares(reference), _shares(current)
    ticks = nice_ticks(0.0, max(max(ref_shares), max(cur_shares)), 4)
    y_max = ticks[-1] or 1.0
    base = top + plot_h

    def y(share: float) -> float:
        return base - share / y_max * plot_h

    body = [_legend(left, 12, sum(reference), sum(current))]
    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID_COLOUR}"/><text x="{left - 5}" y="{y(tick) + 3:.1f}" '
            f'text-anchor="end" fill="{MUTED_COLOUR}">{_share_label(tick)}</text>'
        )
    for i in range(bins):
        x0 = left + i * bin_w
        name = escape(_bin_name(edges, i))
        tip = (
            f"{name}: reference {ref_shares[i]:.1%} ({reference[i]:,}), "
            f"current {cur_shares[i]:.1%} ({current[i]:,})"
        )
        for offset, share, colour, cls in (
            (0.12, ref_shares[i], REFERENCE_COLOUR, "ref"),
            (0.5, cur_shares[i], CURRENT_COLOUR, "cur"),
        ):
            body.append(
                f'<rect class="bar {cls}" x="{x0 + bin_w * offset:.1f}" y="{y(share):.1f}" '
                f'width="{bin_w * 0.38:.1f}" height="{base - y(share):.1f}" fill="{colour}">'
                f"<title>{tip}</title></rect>"
            )
    body.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{base}" y2="{base}" stroke="{MUTED_COLOUR}"/>'
    )
    for i, text in enumerate(labels, start=1):
        x = left + i * bin_w
        row = 1 if staggered and i % 2 == 0 else 0
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4 + row * 12}" '
            f'stroke="{MUTED_COLOUR}"/><text class="edge" x="{x:.1f}" '
            f'y="{base + 14 + row * 12}" text-anchor="middle">{escape(text)}</text>'
        )
    if not labels:
        body.append(
            f'<text x="{left + plot_w / 2}" y="{base + 14}" text-anchor="middle">all values</text>'
        )
    return _svg(WIDTH, height, label, body, "numeric")


def _categorical(
    categories: list[str], reference: list[int], current: list[int], label: str
) -> str:
    ref_shares, cur_shares = _shares(reference), _shares(current)
    listed = len(categories)
    order = sorted(range(listed), key=lambda i: -max(ref_shares[i], cur_shares[i]))
    shown = sorted(order[:MAX_CATEGORIES_SHOWN])
    folded = listed - len(shown) + (1 if reference[-1] or current[-1] else 0)
    rows = [(categories[i], reference[i], current[i], f"category {categories[i]}") for i in shown]
    other_ref = reference[-1] + sum(reference[i] for i in order[MAX_CATEGORIES_SHOWN:])
    other_cur = current[-1] + sum(current[i] for i in order[MAX_CATEGORIES_SHOWN:])
    if other_ref or other_cur:
        others = f"{folded} others" if reference[-1] == current[-1] == 0 else "others"
        rows.append((f"({others})", other_ref, other_cur, f"{others} summed"))
    ref_total, cur_total = sum(reference), sum(current)
    label_w, top, row_h = 128.0, 24.0, 26.0
    bar_x = label_w + 6
    bar_w = WIDTH - bar_x - 40
    peak = max(max(r / ref_total, c / cur_total) for _, r, c, _ in rows) or 1.0
    height = top + row_h * len(rows) + 6
    body = [_legend(bar_x, 12, ref_total, cur_total)]
    for k, (name, ref_n, cur_n, what) in enumerate(rows):
        y0 = top + k * row_h
        r_share, c_share = ref_n / ref_total, cur_n / cur_total
        tip = escape(
            f"{what}: reference {r_share:.1%} ({ref_n:,}), current {c_share:.1%} ({cur_n:,})"
        )
        body.append(
            f'<text class="category" x="{label_w}" y="{y0 + 15}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(clip(name, _LABEL_CHARS))}</text>"
        )
        for dy, share, colour, cls in (
            (2.0, r_share, REFERENCE_COLOUR, "ref"),
            (12.0, c_share, CURRENT_COLOUR, "cur"),
        ):
            length = max(share / peak * bar_w, 0.5 if share else 0.0)
            body.append(
                f'<rect class="bar {cls}" x="{bar_x}" y="{y0 + dy}" width="{length:.1f}" '
                f'height="9" fill="{colour}"><title>{tip}</title></rect>'
                f'<text x="{bar_x + length + 3:.1f}" y="{y0 + dy + 8}" font-size="9" '
                f'fill="{MUTED_COLOUR}">{_share_label(share)}</text>'
            )
    body.append(
        f'<line x1="{bar_x}" x2="{bar_x}" y1="{top - 2}" y2="{height - 4}" '
        f'stroke="{MUTED_COLOUR}"/>'
    )
    return _svg(WIDTH, height, label, body, "categorical")


# ---------------------------------------------------------------- metrics over time
def _time_label(epoch_s: float, span_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, UTC)
    if span_s >= 7 * 86400:
        return moment.strftime("%b %d")
    if span_s >= 86400:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%H:%M")


def metric_svg(metric: str, windows: Sequence[WindowPoint], baseline: float | None) -> str:
    """``metric`` per window (one point per window with a value, joined by a line across
    consecutive windows with values), the baseline dashed; times in UTC."""
    label = f"{metric} per window" + (f", baseline {baseline:.4g}" if baseline is not None else "")
    valued = [(w, w.value) for w in windows if w.value is not None and math.isfinite(w.value)]
    if not valued:
        return _empty(label, f"no window has a {metric} value")
    values = [value for _, value in valued]
    low, high = min(values), max(values)
    if baseline is not None and math.isfinite(baseline):
        low, high = min(low, baseline), max(high, baseline)
    ticks = nice_ticks(low, high, 4)
    left, right, top, bottom, height = 48.0, 14.0, 14.0, 30.0, 190.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    t0 = min(w.start_s for w in windows)
    t1 = max(w.end_s for w in windows)
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return left + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - (v - ticks[0]) / ((ticks[-1] - ticks[0]) or 1.0) * plot_h

    body = []
    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{WIDTH - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID_COLOUR}"/><text x="{left - 5}" y="{y(tick) + 3:.1f}" '
            f'text-anchor="end" fill="{MUTED_COLOUR}">{short_number(tick)}</text>'
        )
    base = top + plot_h
    body.append(
        f'<line x1="{left}" x2="{WIDTH - right}" y1="{base}" y2="{base}" stroke="{MUTED_COLOUR}"/>'
    )
    for k in range(5):
        t = t0 + span * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        body.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{base}" y2="{base + 4}" '
            f'stroke="{MUTED_COLOUR}"/><text x="{x(t):.1f}" y="{base + 15}" '
            f'text-anchor="{anchor}" fill="{MUTED_COLOUR}">{_time_label(t, span)}</text>'
        )
    if baseline is not None and math.isfinite(baseline):
        body.append(
            f'<line class="baseline" x1="{left}" x2="{WIDTH - right}" y1="{y(baseline):.1f}" '
            f'y2="{y(baseline):.1f}" stroke="{BASELINE_COLOUR}" stroke-width="1.2" '
            f'stroke-dasharray="5 4"/><text x="{WIDTH - right - 2}" y="{y(baseline) - 4:.1f}" '
            f'text-anchor="end" fill="{BASELINE_COLOUR}">baseline {baseline:.4g}</text>'
        )
    segment: list[str] = []
    for w in [*windows, None]:
        if w is not None and w.value is not None and math.isfinite(w.value):
            segment.append(f"{x((w.start_s + w.end_s) / 2):.1f},{y(w.value):.1f}")
            continue
        if len(segment) > 1:
            body.append(
                f'<polyline points="{" ".join(segment)}" fill="none" '
                f'stroke="{REFERENCE_COLOUR}" stroke-width="2"/>'
            )
        segment = []
    for w, value in valued:
        start = datetime.fromtimestamp(w.start_s, UTC).strftime("%Y-%m-%d %H:%M")
        end = datetime.fromtimestamp(w.end_s, UTC).strftime("%Y-%m-%d %H:%M")
        body.append(
            f'<circle class="point" cx="{x((w.start_s + w.end_s) / 2):.1f}" cy="{y(value):.1f}" '
            f'r="3.5" fill="{REFERENCE_COLOUR}" stroke="#fff" stroke-width="1">'
            f"<title>{start} – {end} UTC: {escape(metric)} {value:.4g} "
            f"({w.rows:,} labelled rows)</title></circle>"
        )
    return _svg(WIDTH, height, label, body, "metric")
