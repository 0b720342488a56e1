"""The monitoring report: one check's result as a self-contained HTML page, and as JSON.

:func:`render_html` takes the JSON-able dict of a check (``CheckResult.to_dict()`` of
:mod:`shipyard.monitoring.check`: model, version, window, rows, ``drift`` as
``DriftReport.to_dict()``, ``multivariate``, ``performance``, latency, error rate, ``alerts``) and
returns one HTML page that opens without a network: inline CSS (``report.css``), inline SVG charts
(:mod:`shipyard.monitoring.charts`), system fonts, no script. Sections:

- a header: model, version, window, rows, and tiles for the dataset verdict (drift share),
  prediction drift, multivariate drift (domain-classifier AUC), performance and serving figures;
- the alerts the check raised;
- data drift: a table of the input columns, drifted first, then by score (``1 − p`` for tests,
  the statistic for distances — the figure ``column_drift`` alert rules compare), with method,
  statistic, p-value, threshold, PSI and verdict; then per column a chart of the reference and
  current distributions as shares, so samples of different sizes compare;
- prediction (output) drift, the same way;
- the domain classifier's figures and the features that separate the windows most;
- performance: each metric overall against its baseline, and per window as a line chart.

Any part may be missing (``None``): its section says so. Every string that comes from data
(model, column and category names, alert messages) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from html import escape
from importlib import resources
from typing import Any

from shipyard.monitoring.charts import (
    CURRENT_COLOUR,
    REFERENCE_COLOUR,
    WindowPoint,
    distribution_svg,
    metric_svg,
)

_WINDOW_KEYS = frozenset({"start_s", "end_s", "rows"})
_HIGHER_IS_BETTER = frozenset({"accuracy", "roc_auc"})
_NUMERIC = frozenset(  # table headings whose cells are right-aligned figures
    {
        "Value",
        "Threshold",
        "Statistic",
        "p-value",
        "PSI",
        "Score",
        "Importance",
        "Baseline",
        "Current",
        "Change",
        "Allowed",
    }
)


# ---------------------------------------------------------------- public
def render_json(check: Mapping[str, Any]) -> str:
    """The check as strict JSON (indented; NaN and infinity refused)."""
    return json.dumps(check, indent=2, allow_nan=False)


def render_html(check: Mapping[str, Any]) -> str:
    """One self-contained HTML page showing ``check`` (see the module docstring)."""
    drift = _mapping(check.get("drift"))
    model = _text(check.get("model", "model"))
    version = check.get("version")
    title = f"{model} v{version}" if version is not None else model
    sections = [
        _header(check, drift, title),
        _alerts(check.get("alerts") or []),
        _drift_section(drift),
        _multivariate_section(_mapping(check.get("multivariate"))),
        _performance_section(_mapping(check.get("performance"))),
        _footer(check),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Monitoring report · {escape(title)}</title><style>{_stylesheet()}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


@functools.cache
def _stylesheet() -> str:
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


# ---------------------------------------------------------------- values
def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    """A number from the JSON (``"inf"``/``"nan"`` strings included), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _num(value: Any, spec: str = ".4g") -> str:
    number = _float(value)
    if number is None:
        return "—"
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if math.isnan(number):
        return "NaN"
    return format(number, spec)


def _pct(value: Any) -> str:
    number = _float(value)
    return "—" if number is None or not math.isfinite(number) else f"{number:.1%}"


def _count(value: Any) -> str:
    number = _float(value)
    return "—" if number is None or not math.isfinite(number) else f"{int(number):,}"


def _when(value: Any) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS UTC`` when it is in UTC; anything else escaped."""
    text = _text(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return escape(text) or "—"
    if moment.utcoffset() == timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return escape(moment.isoformat(sep=" "))


def _badge(
    state: bool | None, bad: str = "drift", ok: str = "no drift", unknown: str = "not measured"
) -> str:
    if state is None:
        return f'<span class="badge none">{unknown}</span>'
    return (
        f'<span class="badge bad">{bad}</span>' if state else f'<span class="badge ok">{ok}</span>'
    )


def _score(column: Mapping[str, Any]) -> float:
    """The score alert rules compare: ``1 − p`` for tests, the statistic for distances."""
    p_value = _float(column.get("p_value"))
    if p_value is not None:
        return 1.0 - p_value
    statistic = _float(column.get("statistic"))
    return -math.inf if statistic is None or math.isnan(statistic) else statistic


def _ranked(columns: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drifted first, then by score; ties (``1 − p`` rounds to 1 for tiny p-values) by the
    p-value, then by PSI."""

    def key(column: Mapping[str, Any]) -> tuple[bool, float, float, float]:
        p_value = _float(column.get("p_value"))
        psi = _float(column.get("psi"))
        return (
            not column.get("drifted"),
            -_score(column),
            0.0 if p_value is None else p_value,
            -(psi if psi is not None and not math.isnan(psi) else -math.inf),
        )

    return sorted(columns, key=key)


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    cells = "".join(f"<th{' class=num' if name in _NUMERIC else ''}>{name}</th>" for name in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _tile(label: str, value: str, detail: str, state: bool | None) -> str:
    cls = "" if state is None else " bad" if state else " ok"
    return (
        f'<div class="tile{cls}"><div class="label">{label}</div>'
        f'<div class="value">{value}</div><div class="detail">{detail}</div></div>'
    )


# ---------------------------------------------------------------- sections
def _header(check: Mapping[str, Any], drift: Mapping[str, Any] | None, title: str) -> str:
    window = _mapping(check.get("window")) or {}
    meta = (
        f"Window {_when(window.get('start'))} → {_when(window.get('end'))} · "
        f"{_count(check.get('rows'))} predictions · generated {_when(check.get('generated_at'))}"
    )
    tiles = [_dataset_tile(drift), _prediction_tile(drift)]
    tiles.append(_multivariate_tile(_mapping(check.get("multivariate"))))
    tiles.append(_performance_tile(_mapping(check.get("performance"))))
    latency, errors = _float(check.get("latency_p99_ms")), _float(check.get("error_rate"))
    tiles.append(
        _tile(
            "Serving",
            f"{_num(latency, '.3g')} ms" if latency is not None else "—",
            f"p99 latency · error rate {_pct(errors)}",
            None,
        )
    )
    return (
        f"<header><h1>Monitoring report · {escape(title)}</h1>"
        f'<p class="meta">{meta}</p><div class="tiles">{"".join(tiles)}</div></header>'
    )


def _dataset_tile(drift: Mapping[str, Any] | None) -> str:
    if drift is None:
        return _tile("Dataset drift", _badge(None), "drift was not computed", None)
    columns = drift.get("columns") or []
    drifted = sum(1 for c in columns if c.get("drifted"))
    state = bool(drift.get("dataset_drift"))
    detail = (
        f"{drifted} of {len(columns)} columns drifted ({_pct(drift.get('drift_share'))}); "
        f"verdict at ≥ {_pct(drift.get('share_threshold'))}"
    )
    return _tile("Dataset drift", _badge(state), detail, state)


def _prediction_tile(drift: Mapping[str, Any] | None) -> str:
    outputs = (drift or {}).get("predictions") or []
    if drift is None or not outputs:
        return _tile("Prediction drift", _badge(None), "no output column compared", None)
    state = bool(drift.get("prediction_drift"))
    worst = _ranked(outputs)[0]
    detail = (
        f"{escape(_text(worst.get('column')))}: {escape(_text(worst.get('method')))} "
        f"{_num(worst.get('statistic'))}, PSI {_num(worst.get('psi'), '.3f')}"
    )
    return _tile("Prediction drift", _badge(state), detail, state)


def _multivariate_state(mv: Mapping[str, Any]) -> bool:
    return bool(mv.get("drift_detected", mv.get("drifted")))


def _multivariate_threshold(mv: Mapping[str, Any]) -> Any:
    return mv.get("effective_threshold", mv.get("threshold"))


def _multivariate_tile(mv: Mapping[str, Any] | None) -> str:
    if mv is None:
        return _tile("Multivariate drift", _badge(None), "domain classifier not run", None)
    state = _multivariate_state(mv)
    detail = (
        f"domain classifier AUC {_num(mv.get('auc'), '.3f')} ± {_num(mv.get('auc_std'), '.3f')}; "
        f"drift above {_num(_multivariate_threshold(mv), '.3f')}"
    )
    return _tile("Multivariate drift", _badge(state), detail, state)


def _performance_tile(perf: Mapping[str, Any] | None) -> str:
    if perf is None:
        return _tile("Performance", _badge(None), "no outcomes joined", None)
    degraded = perf.get("degradations") or []
    if not _float(perf.get("labelled_rows")):
        return _tile("Performance", _badge(None), "no outcome has arrived yet", None)
    state = bool(degraded)
    names = ", ".join(escape(_text(d.get("metric"))) for d in degraded)
    detail = f"{_count(perf.get('labelled_rows'))} labelled rows" + (
        f"; degraded: {names}" if names else "; within the allowed change"
    )
    return _tile("Performance", _badge(state, "degraded", "not flagged"), detail, state)


def _alerts(alerts: Sequence[Mapping[str, Any]]) -> str:
    if not alerts:
        return '<section id="alerts"><h2>Alerts</h2><p class="note">No alert fired.</p></section>'
    rows = []
    for alert in alerts:
        outcomes = _mapping(alert.get("actions")) or {}
        actions = "; ".join(
            f"{escape(_text(name))}: "
            + escape(", ".join(map(str, out)) if isinstance(out, list) else _text(out))
            for name, out in outcomes.items()
        )
        rows.append(
            f'<tr class="drifted"><td>{escape(_text(alert.get("rule")))}</td>'
            f'<td class="name">{escape(_text(alert.get("subject")))}</td>'
            f'<td class="num">{_num(alert.get("value"))}</td>'
            f'<td class="num">{_num(alert.get("threshold"))}</td>'
            f"<td>{escape(_text(alert.get('message')))}</td><td>{_when(alert.get('at'))}</td>"
            f"<td>{actions or '—'}</td></tr>"
        )
    head = ("Rule", "Subject", "Value", "Threshold", "Message", "At", "Actions")
    return f'<section id="alerts"><h2>Alerts ({len(alerts)})</h2>{_table(head, rows)}</section>'


def _drift_section(drift: Mapping[str, Any] | None) -> str:
    if drift is None:
        return (
            '<section id="drift"><h2>Data drift</h2>'
            '<p class="note">Drift was not computed in this check (no reference data, or no '
            "predictions in the window).</p></section>"
        )
    reference = _mapping(drift.get("reference")) or {}
    current = _mapping(drift.get("current")) or {}
    sides = f"Reference: {_side(reference)}. Current: {_side(current)}."
    legend = (
        f'Charts show each side as shares of its rows: <span class="key" '
        f'style="background:{REFERENCE_COLOUR}"></span>reference <span class="key" '
        f'style="background:{CURRENT_COLOUR}"></span>current.'
    )
    skipped = drift.get("skipped") or []
    not_tested = ""
    if skipped:
        items = "; ".join(
            f"<code>{escape(_text(s.get('column')))}</code> ({escape(_text(s.get('reason')))})"
            for s in skipped
        )
        not_tested = f'<p class="note">Not tested: {items}.</p>'
    columns, outputs = drift.get("columns") or [], drift.get("predictions") or []
    return (
        f'<section id="drift"><h2>Data drift · {_drifted(columns)}</h2>'
        f'<p class="note">{sides}</p><p class="note">{legend}</p>'
        f"{_column_block('input', columns)}{not_tested}</section>"
        f'<section id="predictions"><h2>Prediction (output) drift · {_drifted(outputs)}</h2>'
        f"{_column_block('output', outputs)}</section>"
    )


def _side(side: Mapping[str, Any]) -> str:
    description, rows = _text(side.get("description")), side.get("rows")
    if rows is None or f"{rows} rows" in description:
        return escape(description)
    return f"{escape(description)} ({_count(rows)} rows)"


def _drifted(columns: Sequence[Mapping[str, Any]]) -> str:
    if not columns:
        return "nothing compared"
    drifted = sum(1 for c in columns if c.get("drifted"))
    return f"{drifted} of {len(columns)} column{'s' if len(columns) > 1 else ''} drifted"


def _column_block(prefix: str, columns: Sequence[Mapping[str, Any]]) -> str:
    if not columns:
        return f'<p class="note">No {prefix} column was compared.</p>'
    ranked = _ranked(columns)
    rows, cards = [], []
    for index, column in enumerate(ranked):
        anchor = f"{prefix}-{index}"
        name = escape(_text(column.get("column")))
        drifted = bool(column.get("drifted"))
        rows.append(
            f'<tr class="{"drifted" if drifted else "stable"}">'
            f'<td class="name"><a href="#{anchor}">{name}</a></td>'
            f"<td>{escape(_text(column.get('kind')))}</td>"
            f"<td>{escape(_text(column.get('method')))}</td>"
            f'<td class="num">{_num(column.get("statistic"))}</td>'
            f'<td class="num">{_num(column.get("p_value"), ".3g")}</td>'
            f'<td class="num">{_num(column.get("threshold"))}</td>'
            f'<td class="num">{_num(column.get("psi"), ".3f")}</td>'
            f'<td class="num">{_num(_score(column), ".3f")}</td>'
            f'<td class="verdict">{_badge(drifted)}</td></tr>'
        )
        cards.append(_column_card(anchor, column))
    head = (
        "Column",
        "Kind",
        "Method",
        "Statistic",
        "p-value",
        "Threshold",
        "PSI",
        "Score",
        "Verdict",
    )
    return f'{_table(head, rows)}<div class="cards">{"".join(cards)}</div>'


def _column_card(anchor: str, column: Mapping[str, Any]) -> str:
    name = _text(column.get("column"))
    drifted = bool(column.get("drifted"))
    method = escape(_text(column.get("method")))
    p_value = column.get("p_value")
    test = (
        f"p {_num(p_value, '.3g')} (drift below {_num(column.get('threshold'))})"
        if _float(p_value) is not None
        else f"drift at ≥ {_num(column.get('threshold'))}"
    )
    stats = (
        f"{escape(_text(column.get('kind')))} · {method} {_num(column.get('statistic'))} · "
        f"{test} · PSI {_num(column.get('psi'), '.3f')} · n {_count(column.get('reference_count'))}"
        f" → {_count(column.get('current_count'))}"
    )
    chart = distribution_svg(
        _mapping(column.get("histogram")) or {},
        label=f"{name}: reference and current distributions",
    )
    return (
        f'<section class="card{" drifted" if drifted else ""}" id="{anchor}">'
        f'<h3><span class="name">{escape(name)}</span>{_badge(drifted)}</h3>'
        f'<p class="stats">{stats}</p>{chart}</section>'
    )


def _multivariate_section(mv: Mapping[str, Any] | None) -> str:
    if mv is None:
        return (
            '<section id="multivariate"><h2>Multivariate drift</h2><p class="note">The domain '
            "classifier was not run in this check.</p></section>"
        )
    figures = (
        f"A classifier trained to tell current rows from reference rows reaches a held-out ROC "
        f"AUC of <strong>{_num(mv.get('auc'), '.3f')}</strong> ± {_num(mv.get('auc_std'), '.3f')}"
        f" (0.5: indistinguishable); drift above {_num(_multivariate_threshold(mv), '.3f')}"
    )
    if mv.get("p_value") is not None:
        figures += f", p-value {_num(mv.get('p_value'), '.3g')}"
    if mv.get("n_reference") is not None:
        figures += (
            f"; {_count(mv.get('n_reference'))} reference and {_count(mv.get('n_current'))} "
            "current rows"
        )
    features = []
    for item in mv.get("top_features") or []:
        if isinstance(item, Mapping):
            features.append((_text(item.get("column")), _float(item.get("importance"))))
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 2:
            features.append((_text(item[0]), _float(item[1])))
    table = ""
    if features:
        peak = max((v for _, v in features if v is not None and v > 0), default=1.0)
        rows = [
            f'<tr><td class="name">{escape(name)}</td><td class="num">{_num(value, ".3f")}</td>'
            f'<td style="width:50%"><span class="importance" style="width:'
            f'{max(0.0, (value or 0.0) / peak * 100):.1f}%"></span></td></tr>'
            for name, value in features
        ]
        head = ("Feature", "Importance", "")
        table = _table(head, rows)
    return (
        f'<section id="multivariate"><h2>Multivariate drift {_badge(_multivariate_state(mv))}'
        f'</h2><p class="note">{figures}.</p>{table}</section>'
    )


def _performance_section(perf: Mapping[str, Any] | None) -> str:
    if perf is None:
        return (
            '<section id="performance"><h2>Performance</h2><p class="note">No outcomes were '
            "joined to the predictions of this window.</p></section>"
        )
    overall = _mapping(perf.get("overall")) or {}
    baseline = _mapping(perf.get("baseline")) or {}
    windows = [w for w in perf.get("windows") or [] if isinstance(w, Mapping)]
    degraded = {
        _text(d.get("metric")): d for d in perf.get("degradations") or [] if isinstance(d, Mapping)
    }
    metrics = list(overall) or [k for w in windows[:1] for k in w if k not in _WINDOW_KEYS]
    rows, charts = [], []
    for metric in metrics:
        base, now = _float(baseline.get(metric)), _float(overall.get(metric))
        change = now - base if now is not None and base is not None else None
        found = degraded.get(metric)
        state = None if base is None else found is not None
        direction = "higher is better" if metric in _HIGHER_IS_BETTER else "lower is better"
        rows.append(
            f'<tr class="{"drifted" if found else "stable"}">'
            f'<td class="name">{escape(metric)}</td><td>{direction}</td>'
            f'<td class="num">{_num(base)}</td><td class="num">{_num(now)}</td>'
            f'<td class="num">{_num(change, "+.4g")}</td>'
            f'<td class="num">{_num(found.get("allowed")) if found else "—"}</td>'
            f"<td>{_badge(state, 'degraded', 'not flagged', 'no baseline')}</td></tr>"
        )
        points = [
            WindowPoint(
                float(_float(w.get("start_s")) or 0.0),
                float(_float(w.get("end_s")) or 0.0),
                _float(w.get(metric)),
                int(_float(w.get("rows")) or 0),
            )
            for w in windows
        ]
        charts.append(
            f'<section class="card metric"><h3><span class="name">{escape(metric)}</span>'
            f"{_badge(state, 'degraded', 'not flagged', 'no baseline')}</h3>"
            f'<p class="stats">overall {_num(now)} · baseline {_num(base)} · '
            f"{len(windows)} windows (UTC)</p>{metric_svg(metric, points, base)}</section>"
        )
    head = ("Metric", "Direction", "Baseline", "Current", "Change", "Allowed", "Status")
    messages = "".join(
        f'<p class="note">⚠ {escape(_text(d.get("message")))}</p>' for d in degraded.values()
    )
    task = escape(_text(perf.get("task")))
    unlabelled = perf.get("unlabelled_rows")
    counts = f"{_count(perf.get('labelled_rows'))} labelled rows" + (
        f", {_count(unlabelled)} still without an outcome" if unlabelled is not None else ""
    )
    return (
        f'<section id="performance"><h2>Performance</h2><p class="note">{task} model · '
        f"{counts}; the baseline is the validation figure recorded at training.</p>"
        f"{_table(head, rows)}{messages}"
        + (
            f'<div class="cards">{"".join(charts)}</div>'
            if windows
            else '<p class="note">No window has labelled rows yet.</p>'
        )
        + "</section>"
    )


def _footer(check: Mapping[str, Any]) -> str:
    return (
        "<footer><p>Tests (<code>ks</code>, <code>chi2</code>, <code>chisquare</code>) flag drift "
        "when p &lt; threshold; distances (<code>wasserstein</code> normalised by the reference "
        "standard deviation, <code>jensenshannon</code> in base 2, <code>psi</code>) when the "
        "statistic ≥ threshold. PSI: below 0.1 stable, 0.1–0.25 moderate, above 0.25 major. "
        "Score: 1 − p for tests, the statistic for distances — the figure <code>column_drift</code>"
        " alert rules compare. Numeric bins are the reference deciles.</p>"
        f"<p>shipyard monitoring report · {escape(_text(check.get('model')))} · generated "
        f"{_when(check.get('generated_at'))}</p></footer>"
    )
