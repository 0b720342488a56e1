"""``shipyard monitor``: check served models for drift and quality, alert, report, load labels."""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from shipyard import monitor as monitoring
from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, print_table
from shipyard.core.performance import Task
from shipyard.errors import InvalidInput
from shipyard.monitoring.alerts import Alerter, load_alert_config
from shipyard.monitoring.check import CheckResult
from shipyard.monitoring.report import render_html, render_json
from shipyard.workspace import Workspace

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Drift, quality and alerts for served models, from their prediction log.",
    invoke_without_command=True,
)
app.callback()(require_command)
labels_app = typer.Typer(
    help="Outcomes (labels) of served predictions.", invoke_without_command=True
)
labels_app.callback()(require_command)
app.add_typer(labels_app, name="labels")
reference_app = typer.Typer(
    help="Reference data a model version is compared with.", invoke_without_command=True
)
reference_app.callback()(require_command)
app.add_typer(reference_app, name="reference")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WORST_COLUMNS = 5

Model = Annotated[str, typer.Option("--model", "-m", help="The deployment (model) name.")]
Window = Annotated[str, typer.Option("--window", "-w", help="How far back to look: 30m, 1h, 7d.")]
Server = Annotated[
    str | None,
    typer.Option("--server", help="A running server's URL: its /metrics give the error rate."),
]
Rules = Annotated[
    Path | None, typer.Option("--rules", help="Alert rules (YAML); without: no alerts are sent.")
]
TaskOption = Annotated[
    str | None, typer.Option("--task", help="binary or regression (default: from the data).")
]


def parse_duration(value: str, option: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not a duration; use e.g. 30s, 5m, 1h, 7d", param_hint=f"'{option}'"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _task(value: str | None) -> Task | None:
    if value is None:
        return None
    if value not in ("binary", "regression"):
        raise typer.BadParameter(f"{value!r}: use binary or regression", param_hint="'--task'")
    return value  # type: ignore[return-value]


def _alerter(ws: Workspace, rules: Path | None) -> Alerter | None:
    if rules is None:
        return None
    config = load_alert_config(rules)
    return Alerter(ws.database, config.build_rules(), webhooks=config.webhooks)


def _summary(result: CheckResult) -> None:
    drift = result.drift
    rows: list[list[Any]] = [["predictions", result.rows]]
    if drift is not None:
        drifted = f"{len(drift.drifted_columns)} of {len(drift.columns)} columns"
        rows.append(["drift share", f"{drift.drift_share:.2f} ({drifted})"])
        rows.append(["drifted columns", drift.drifted_columns or "-"])
        rows.append(["prediction drift", drift.prediction_drift])
    else:
        rows.append(["drift", "no reference data or no predictions in the window"])
    if result.performance is not None:
        performance = result.performance
        for metric, value in performance["overall"].items():
            base = performance["baseline"].get(metric)
            shown = "-" if value is None else f"{value:.4f}"
            rows.append([metric, shown if base is None else f"{shown} (baseline {base:.4f})"])
        rows.append(["labelled rows", performance["labelled_rows"]])
    if result.latency_p99_ms is not None:
        rows.append(["p99 latency", f"{result.latency_p99_ms:.2f} ms"])
    for alert in result.alerts:
        rows.append(["ALERT", alert["message"]])
    print_table(
        f"check of {result.model}"
        + (f" v{result.version}" if result.version is not None else "")
        + f", {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC",
        ["figure", "value"],
        rows,
        empty="nothing measured",
    )


@app.command("check")
def check(
    ctx: typer.Context,
    model: Model,
    window: Window = "1h",
    rules: Rules = None,
    task: TaskOption = None,
    multivariate: Annotated[
        bool, typer.Option("--multivariate", help="Also run the domain-classifier test (slower).")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", "-o", help="Also write the HTML report here.")
    ] = None,
    server: Server = None,
    as_json: JsonFlag = False,
) -> None:
    """Check one model once: drift, quality, latency (and, with --server, the error rate since
    the server started); send the alerts its rules call for."""
    ws = workspace(ctx)
    errors = (
        None if server is None else monitoring.error_rate(monitoring.request_counts(server, model))
    )
    result = monitoring.check(
        ws,
        model,
        window=parse_duration(window, "--window"),
        alerter=_alerter(ws, rules),
        task=_task(task),
        multivariate=multivariate,
        errors=errors,
    )
    if report is not None:
        _write(report, render_html(result.to_dict()))
    if as_json:
        emit_json(result.to_dict())
        return
    _summary(result)
    if report is not None:
        typer.echo(f"report written to {report}")


@app.command("report")
def report(
    ctx: typer.Context,
    model: Model,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    window: Window = "1h",
    task: TaskOption = None,
    json_output: Annotated[
        Path | None, typer.Option("--json-output", help="Also write the check as JSON here.")
    ] = None,
) -> None:
    """Write a self-contained HTML report (and optionally JSON) of one check."""
    result = monitoring.check(
        workspace(ctx), model, window=parse_duration(window, "--window"), task=_task(task)
    )
    document = result.to_dict()
    _write(output, render_html(document))
    if json_output is not None:
        _write(json_output, render_json(document))
    typer.echo(f"report written to {output}")


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


class DriftGauges:
    """Drift figures as Prometheus gauges with bounded cardinality: per model the drift share,
    the prediction drift score and the scores of the ``WORST_COLUMNS`` worst columns (by rank)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.share = Gauge(
            "shipyard_drift_share",
            "Share of input columns that drifted.",
            ["model"],
            registry=registry,
        )
        self.prediction = Gauge(
            "shipyard_prediction_drift_score",
            "Largest drift score of the model's outputs.",
            ["model"],
            registry=registry,
        )
        self.worst = Gauge(
            "shipyard_drift_worst_column_score",
            f"Drift scores of the {WORST_COLUMNS} worst input columns, by rank (1 = worst).",
            ["model", "rank", "column"],
            registry=registry,
        )
        self._worst_labels: dict[str, list[tuple[str, str]]] = {}

    def update(self, result: CheckResult) -> None:
        figures = result.figures()
        if figures.drift_share is not None:
            self.share.labels(result.model).set(figures.drift_share)
        if figures.prediction_drift is not None:
            self.prediction.labels(result.model).set(figures.prediction_drift)
        for old_rank, old_column in self._worst_labels.pop(result.model, []):
            self.worst.remove(result.model, old_rank, old_column)
        ranked = sorted(figures.column_scores.items(), key=lambda item: -item[1])[:WORST_COLUMNS]
        labels = []
        for position, (column, score) in enumerate(ranked, start=1):
            self.worst.labels(result.model, str(position), column).set(score)
            labels.append((str(position), column))
        self._worst_labels[result.model] = labels


@app.command("run")
def run(
    ctx: typer.Context,
    models: Annotated[
        list[str], typer.Option("--model", "-m", help="Deployments to check (repeatable).")
    ],
    every: Annotated[str, typer.Option("--every", help="Time between checks: 5m, 1h.")] = "5m",
    window: Window = "1h",
    rules: Rules = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve the drift gauges on this port.")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=1, help="Stop after this many rounds.")
    ] = None,
    server: Server = None,
) -> None:
    """Check the models every interval until stopped (Ctrl-C); alerts de-duplicate across rounds."""
    ws = workspace(ctx)
    interval = parse_duration(every, "--every")
    span = parse_duration(window, "--window")
    alerter = _alerter(ws, rules)
    registry = CollectorRegistry()
    gauges = DriftGauges(registry)
    if metrics_port is not None:
        start_http_server(metrics_port, registry=registry)
        typer.echo(f"drift gauges on http://127.0.0.1:{metrics_port}/metrics")
    stop = threading.Event()
    rounds = 0
    counts: dict[str, tuple[float, float]] = {}
    try:
        while not stop.is_set():
            started = time.monotonic()
            for model in models:
                try:
                    errors = None
                    if server is not None:  # the error rate since the previous round
                        now = monitoring.request_counts(server, model)
                        errors = monitoring.error_rate(now, counts.get(model))
                        counts[model] = now
                    result = monitoring.check(
                        ws, model, window=span, alerter=alerter, errors=errors
                    )
                except InvalidInput:
                    raise
                except Exception:  # keep monitoring the others; the next round retries
                    logger.exception("checking %s failed", model)
                    continue
                gauges.update(result)
                share = "-" if result.drift is None else f"{result.drift.drift_share:.2f}"
                typer.echo(
                    f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {model}: {result.rows} predictions, "
                    f"drift share {share}, {len(result.alerts)} alert(s)"
                )
            rounds += 1
            if iterations is not None and rounds >= iterations:
                break
            stop.wait(max(0.0, interval.total_seconds() - (time.monotonic() - started)))
    except KeyboardInterrupt:
        typer.echo("stopped")


def _read_table(path: Path, what: str) -> pa.Table:
    if not path.is_file():
        raise InvalidInput(f"{what} file {str(path)!r} does not exist", field="path")
    return pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)


@reference_app.command("set")
def set_reference(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="A model version URI, e.g. churn/3 or churn@production.")
    ],
    path: Annotated[Path, typer.Argument(help="Parquet or CSV with the model's input columns.")],
    as_json: JsonFlag = False,
) -> None:
    """Keep a sample of data (e.g. the training set) as a version's reference for drift and
    request validation; the model's answers on it are stored with it."""
    rows = workspace(ctx).set_reference(model, _read_table(path, "reference"))
    if as_json:
        emit_json({"model": model, "rows": rows})
    else:
        typer.echo(f"reference of {model} set: {rows} rows")


@labels_app.command("load")
def load_labels(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="Parquet or CSV: request_id, label[, row, idempotency_key, time]."),
    ],
    model: Model,
    as_json: JsonFlag = False,
) -> None:
    """Store outcomes of a model's predictions from a file; they are joined to predictions by
    request id (and row) at check time."""
    if not path.is_file():
        raise InvalidInput(f"labels file {str(path)!r} does not exist", field="path")
    table: pa.Table
    table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    stored = monitoring.log_outcomes(workspace(ctx), model, table)
    if as_json:
        emit_json({"model": model, "stored": stored})
    else:
        typer.echo(f"stored {stored} outcomes of {model}")
