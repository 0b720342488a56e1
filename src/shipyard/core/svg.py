"""Building blocks of the inline SVG charts in shipyard's self-contained HTML reports
(monitoring and experiments): round axis ticks, clipped labels, the ``<svg>`` element with its
title and ``aria-label``, and the box a chart shows when it has nothing to plot. Pure string
building; every label is escaped with :func:`html.escape`."""

from __future__ import annotations

import math
from html import escape


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[low, high]`` with about ``count`` steps of 1, 2, 2.5 or 5
    times a power of ten; the first and last ticks bound the range."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    steps = round((last - first) / step)
    return [round(first + k * step, 12) for k in range(steps + 1)]


def clip(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters with an ellipsis."""
    return text if len(text) <= chars else text[: chars - 1] + "…"


def svg_element(
    width: float, height: float, label: str, body: list[str], cls: str, *, font_size: int, ink: str
) -> str:
    """One ``<svg>`` chart: ``body`` inside, ``label`` as its title and accessible name."""
    return (
        f'<svg class="chart {cls}" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="{escape(label)}" font-size="{font_size}" fill="{ink}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def empty_chart(
    width: float, label: str, note: str, *, font_size: int, ink: str, grid: str, muted: str
) -> str:
    """A framed box saying why a chart has nothing to show."""
    body = [
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="59" fill="none" stroke="{grid}" '
        'rx="4"/>',
        f'<text x="{width / 2}" y="34" text-anchor="middle" fill="{muted}">{escape(note)}</text>',
    ]
    return svg_element(width, 60, f"{label}: {note}", body, "empty", font_size=font_size, ink=ink)
