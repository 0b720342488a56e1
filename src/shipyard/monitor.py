"""Monitoring a served model from its own prediction log: gather what one check needs from the
workspace (the window of predictions, the outcomes that arrived, the version's reference sample
and its training metrics), run it, and hand the figures to the alert rules.

This is the glue the CLI (``shipyard monitor``) and the Python API share; the computing is in
:mod:`shipyard.monitoring`.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client.parser import text_string_to_metric_families

from shipyard.core.identifiers import validate_name
from shipyard.core.performance import METRICS, Task
from shipyard.errors import InvalidInput, NotFound, StorageUnavailable
from shipyard.monitoring.alerts import Alerter
from shipyard.monitoring.check import CheckResult, check_model
from shipyard.records import ModelVersion
from shipyard.storage.events import OUTCOMES, PREDICTIONS
from shipyard.workspace import REFERENCE_PARQUET, Workspace

logger = logging.getLogger(__name__)

BASELINE_PREFIXES = ("", "val_", "validation_", "test_")
OUTCOME_HORIZON = timedelta(days=30)
"""How long after a prediction its outcome is still looked for."""


def baseline_metrics(ws: Workspace, name: str, version: int) -> dict[str, float]:
    """The quality the version's training run recorded, by metric name: ``roc_auc`` from a run
    metric named ``roc_auc``, ``val_roc_auc``, ``validation_roc_auc`` or ``test_roc_auc``
    (``auc`` is accepted for ``roc_auc``), the first found in that order."""
    lineage = ws.lineage(f"models:/{name}/{version}")
    if lineage.run is None:
        return {}
    found: dict[str, float] = {}
    known = {m for metrics in METRICS.values() for m in metrics}
    for metric in sorted(known):
        aliases = (metric, "auc") if metric == "roc_auc" else (metric,)
        for prefix in BASELINE_PREFIXES:
            hit = next(
                (f"{prefix}{a}" for a in aliases if f"{prefix}{a}" in lineage.run.metrics), None
            )
            if hit is not None:
                found[metric] = lineage.run.metrics[hit]
                break
    return found


def infer_task(predictions: pa.Table, outcomes: pa.Table) -> Task | None:
    """``binary`` when the model answers probabilities of two classes and the labels are 0/1,
    ``regression`` when it answers one number; None when no outcome arrived."""
    if outcomes.num_rows == 0:
        return None
    labels = set(outcomes.column("label").drop_null().to_pylist())
    if "out_output_1" in predictions.column_names and labels <= {0.0, 1.0}:
        return "binary"
    if "out_output" in predictions.column_names:
        return "binary" if labels <= {0.0, 1.0} else "regression"
    return None


def request_counts(server_url: str, model: str) -> tuple[float, float]:
    """(failed, total) inference requests a running server has answered for ``model`` since it
    started, from its ``/metrics`` (``shipyard_requests_total``; failed = 5xx or a gRPC code
    other than OK and the client-error codes)."""
    url = server_url.rstrip("/") + "/metrics"
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(
            f"server URL must be http:// or https://, got {server_url!r}", field="server"
        )
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise StorageUnavailable(f"cannot read {url}: {exc}") from exc
    failed = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "shipyard_requests":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("model") != model:
                continue
            total += sample.value
            code = sample.labels.get("code", "")
            if code.startswith("5") or code in _GRPC_FAILURES:
                failed += sample.value
    return failed, total


_GRPC_FAILURES = {"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "RESOURCE_EXHAUSTED"}


def error_rate(now: tuple[float, float], before: tuple[float, float] | None = None) -> float | None:
    """The failed share of the requests between two ``request_counts`` readings (since the
    server started when ``before`` is None); None when there were none."""
    failed, total = now
    if before is not None:
        failed, total = failed - before[0], total - before[1]
    return None if total <= 0 else failed / total


def check(
    ws: Workspace,
    model: str,
    *,
    window: timedelta,
    end: datetime | None = None,
    alerter: Alerter | None = None,
    task: Task | None = None,
    baseline: Mapping[str, float] | None = None,
    max_change: Mapping[str, float] | None = None,
    performance_window: timedelta = timedelta(hours=1),
    multivariate: bool = False,
    errors: float | None = None,
) -> CheckResult:
    """Check the deployment ``model`` (its prediction log is kept under that name) over the
    ``window`` ending at ``end`` (default now): drift against the reference of the version
    that served most of the window, quality where outcomes arrived, latency, and ``errors``
    (the failed share of requests, see :func:`error_rate`, when known); then alerts."""
    name = validate_name(model, what="model (deployment) name")
    if window <= timedelta(0):
        raise InvalidInput(f"window must be positive, got {window}", field="window")
    end = end or datetime.now(UTC)
    start = end - window
    events = ws.events
    predictions = events.read(PREDICTIONS, name, start, end)
    outcomes = events.read(OUTCOMES, name, start, end + OUTCOME_HORIZON)
    outcomes = outcomes.filter(pc.is_null(outcomes.column("metric")))  # the model's target
    version = _serving_version(predictions)
    reference = reference_columns = reference_profile = None
    stored = _find_version(ws, name, version)
    folder = None if stored is None else ws.reference_dir(stored)
    if stored is not None and folder is not None:
        path = folder / REFERENCE_PARQUET
        if path.exists():
            reference = str(path)
            reference_profile = ws.reference_profile(stored)
            reference_columns = (
                [c.name for c in reference_profile.columns] if reference_profile else []
            )
    chosen_task = task or infer_task(predictions, outcomes)
    base = (
        dict(baseline)
        if baseline is not None
        else (baseline_metrics(ws, name, version) if version is not None else {})
    )
    result = check_model(
        model=name,
        version=version,
        start=start,
        end=end,
        predictions=predictions,
        reference=reference,
        reference_columns=reference_columns or (),
        reference_profile=reference_profile,
        outcomes=outcomes if chosen_task is not None else None,
        task=chosen_task,
        baseline=base,
        max_change=max_change,
        performance_window_s=performance_window.total_seconds(),
        multivariate=multivariate,
    )
    result = replace(result, error_rate=errors)
    if alerter is not None:
        result = replace(result, alerts=alerter.check(result.figures(), now=end))
    return result


def _find_version(ws: Workspace, name: str, version: int | None) -> ModelVersion | None:
    """The registered version that served the window (None when the deployment's name is not a
    registered model's, or nothing was logged)."""
    if version is None:
        return None
    try:
        return ws.registry.get_version(name, version)
    except NotFound:
        logger.warning("deployment %s: no registered version %d to compare with", name, version)
        return None


def _serving_version(predictions: pa.Table) -> int | None:
    """The version that answered most rows of the window (None: nothing logged)."""
    if predictions.num_rows == 0:
        return None
    counts = predictions.column("version").drop_null().value_counts().to_pylist()
    if not counts:
        return None
    best = max(counts, key=lambda c: (c["counts"], c["values"]))
    return int(best["values"])


def log_outcomes(
    ws: Workspace, model: str, outcomes: Sequence[Mapping[str, Any]] | pa.Table
) -> int:
    """Store outcomes (``request_id``, ``label``; optional ``row``, ``unit_key``,
    ``idempotency_key``, ``time``) of ``model``'s predictions; returns how many were stored."""
    table = outcomes if isinstance(outcomes, pa.Table) else _outcome_table(outcomes)
    if "time" not in table.column_names:
        stamp = pa.array([datetime.now(UTC)] * table.num_rows, pa.timestamp("us", tz="UTC"))
        table = table.append_column("time", stamp)
    if "model" not in table.column_names:
        table = table.append_column("model", pa.array([model] * table.num_rows, pa.string()))
    return ws.events.append(OUTCOMES, table)


_OUTCOME_FIELDS = {
    "request_id": str,
    "row": int,
    "unit_key": str,
    "idempotency_key": str,
    "metric": str,
}


def feedback_request(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Parse a ``POST /v1/feedback`` body: ``{"model": NAME, "outcomes": [{"request_id", "label",
    "row"?, "unit_key"?, "idempotency_key"?, "metric"?}, ...]}`` or one outcome's fields beside
    ``model``. ``metric`` names the outcome (an experiment metric); without it, ``label`` is the
    model's target."""
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", field="body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("'model' (the served model's name) is required", field="model")
    raw = body.get("outcomes")
    if raw is None:
        raw = [{k: v for k, v in body.items() if k != "model"}]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'outcomes' must be a non-empty list", field="outcomes")
    out = []
    for index, item in enumerate(raw):
        where = f"outcomes[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object", field=where)
        unknown = sorted(set(item) - {*_OUTCOME_FIELDS, "label"})
        if unknown:
            raise InvalidInput(
                f"{where} has unknown fields {unknown}", field=f"{where}.{unknown[0]}"
            )
        label = item.get("label")
        if isinstance(label, bool) or not isinstance(label, (int, float)) or label != label:
            raise InvalidInput(
                f"{where}.label must be a number, got {label!r}", field=f"{where}.label"
            )
        if item.get("request_id") is None and item.get("unit_key") is None:
            raise InvalidInput(
                f"{where} needs 'request_id' or 'unit_key'", field=f"{where}.request_id"
            )
        record: dict[str, Any] = {"label": float(label)}
        for name, kind in _OUTCOME_FIELDS.items():
            value = item.get(name)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise InvalidInput(
                    f"{where}.{name} must be a {kind.__name__}, got {value!r}",
                    field=f"{where}.{name}",
                )
            record[name] = value
        out.append(record)
    return model, out


def _outcome_table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    if not records:
        raise InvalidInput("no outcomes given", field="outcomes")
    for index, record in enumerate(records):
        if record.get("label") is None:
            raise InvalidInput(f"outcomes[{index}] lacks 'label'", field="label")
    columns = {
        name: [r.get(name) for r in records]
        for name in ("request_id", "row", "unit_key", "idempotency_key", "label", "metric")
    }
    return pa.table(
        {
            "request_id": pa.array(columns["request_id"], pa.string()),
            "row": pa.array(columns["row"], pa.int32()),
            "unit_key": pa.array(columns["unit_key"], pa.string()),
            "idempotency_key": pa.array(columns["idempotency_key"], pa.string()),
            "label": pa.array(columns["label"], pa.float64()),
            "metric": pa.array(columns["metric"], pa.string()),
        }
    )
