"""One monitoring check of a model: drift of a window of its prediction log against its reference,
its quality where outcomes have arrived, its latency — the figures the alert rules judge and the
report shows.

Inputs are plain tables: the predictions of the window as the event log returns them
(``time``, ``request_id``, ``row``, ``latency_ms``, ``in_<column>``, ``out_<output>``), the outcomes
(``request_id``, ``row``, ``label``, ``idempotency_key``; the latest record per key and per row
counts), and the reference sample kept with the model version (its input columns plus
``out_<output>``). The workspace gathers them; this module only computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.core.alert_rules import Figures
from shipyard.core.detectors import ADWIN
from shipyard.core.performance import (
    METRICS,
    Task,
    compute_metrics,
    degradations,
    windowed,
)
from shipyard.core.profile import Profile
from shipyard.errors import InvalidInput
from shipyard.monitoring.drift import DataSource, DriftReport, compute_drift
from shipyard.monitoring.multivariate import domain_classifier_drift

ADWIN_DELTA = 0.002
INPUT_PREFIX = "in_"
OUTPUT_PREFIX = "out_"


@dataclass(frozen=True)
class CheckResult:
    """Everything one check found; ``to_dict`` is the JSON the report renders."""

    model: str
    version: int | None
    start: datetime
    end: datetime
    rows: int
    drift: DriftReport | None
    multivariate: dict[str, Any] | None
    performance: dict[str, Any] | None
    latency_p99_ms: float | None
    streaming: dict[str, Any] | None = None
    error_rate: float | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def figures(self) -> Figures:
        """What the alert rules judge."""
        drift = self.drift
        scores: dict[str, float] = {}
        if drift is not None:
            scores = {c.column: _score(c.statistic, c.p_value) for c in drift.columns}
        drops: dict[str, float] = {}
        if self.performance is not None:
            for metric, value in self.performance["overall"].items():
                base = self.performance["baseline"].get(metric)
                if value is not None and base is not None:
                    drops[metric] = (
                        base - value if metric in ("accuracy", "roc_auc") else value - base
                    )
        return Figures(
            model=self.model,
            drift_share=None if drift is None else drift.drift_share,
            prediction_drift=None
            if drift is None or not drift.predictions
            else max(_score(c.statistic, c.p_value) for c in drift.predictions),
            column_scores=scores,
            metric_drops=drops,
            error_rate=self.error_rate,
            latency_p99_ms=self.latency_p99_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "generated_at": self.generated_at.isoformat(),
            "rows": self.rows,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "multivariate": self.multivariate,
            "performance": self.performance,
            "latency_p99_ms": self.latency_p99_ms,
            "streaming": self.streaming,
            "error_rate": self.error_rate,
            "alerts": self.alerts,
        }


def _score(statistic: float, p_value: float | None) -> float:
    """A column's drift score for rules: 1 − p for tests, the distance itself otherwise."""
    return 1.0 - p_value if p_value is not None else float(statistic)


def current_inputs(predictions: pa.Table) -> pa.Table:
    """The logged inputs under their own names plus the outputs, to compare with the reference."""
    names, arrays = [], []
    for name in predictions.column_names:
        if name.startswith(INPUT_PREFIX):
            names.append(name.removeprefix(INPUT_PREFIX))
            arrays.append(predictions.column(name))
        elif name.startswith(OUTPUT_PREFIX):
            names.append(name)
            arrays.append(predictions.column(name))
    return pa.table(arrays, names=names)


def check_model(
    *,
    model: str,
    version: int | None,
    start: datetime,
    end: datetime,
    predictions: pa.Table,
    reference: DataSource | None,
    reference_columns: Sequence[str] = (),
    reference_profile: Profile | None = None,
    outcomes: pa.Table | None = None,
    task: Task | None = None,
    baseline: Mapping[str, float] | None = None,
    max_change: Mapping[str, float] | None = None,
    performance_window_s: float = 3600.0,
    multivariate: bool = False,
    seed: int = 0,
) -> CheckResult:
    """Drift, multivariate drift (optional), quality and latency of one window of predictions."""
    current = current_inputs(predictions)
    drift = None
    mv = None
    if reference is not None and predictions.num_rows:
        shared = [c for c in reference_columns if c in current.column_names]
        inputs = [c for c in shared if not c.startswith(OUTPUT_PREFIX)]
        outputs = [c for c in shared if c.startswith(OUTPUT_PREFIX)]
        drift = compute_drift(
            reference,
            current,
            columns=inputs,
            prediction_columns=outputs,
            reference_profile=reference_profile,
            reference_description=f"{model} v{version} reference",
            current_description=f"{model} predictions {start.isoformat()} .. {end.isoformat()}",
        )
        if multivariate and inputs:
            table = (
                reference
                if isinstance(reference, (pa.Table, pd.DataFrame))
                else pq.read_table(reference, columns=inputs)
            )
            mv = domain_classifier_drift(table, current, columns=inputs, seed=seed).to_dict()
    latency = None
    if predictions.num_rows and "latency_ms" in predictions.column_names:
        latency = float(np.percentile(predictions.column("latency_ms").to_numpy(), 99))
    streaming = None
    if predictions.num_rows and task in (None, "binary"):
        streaming = _streaming(predictions)
    performance = None
    if outcomes is not None and task is not None and predictions.num_rows:
        performance = _performance(
            predictions, outcomes, task, baseline or {}, max_change or {}, performance_window_s
        )
    return CheckResult(
        model=model,
        version=version,
        start=start,
        end=end,
        rows=predictions.num_rows,
        drift=drift,
        multivariate=mv,
        performance=performance,
        latency_p99_ms=latency,
        streaming=streaming,
    )


def _streaming(predictions: pa.Table) -> dict[str, Any] | None:
    """ADWIN (δ = 0.002: at most δ·n/32 false alarms expected over n values, see
    core.detectors) over the model's score in arrival order: where within the window the
    score's mean changed. Only for scores in [0, 1] (probabilities)."""
    name = next((c for c in ("out_output_1", "out_output") if c in predictions.column_names), None)
    if name is None:
        return None
    ordered = predictions.take(pc.sort_indices(predictions, [("time", "ascending")]))
    scores = ordered.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.all((scores >= 0) & (scores <= 1)):
        return None
    detector = ADWIN(delta=ADWIN_DELTA)
    changes = [i for i, value in enumerate(scores) if detector.update(float(value))]
    times = ordered.column("time").to_pylist()
    return {
        "column": name,
        "detector": "adwin",
        "delta": ADWIN_DELTA,
        "values": len(scores),
        "changes": len(changes),
        "first_change_at": times[changes[0]].isoformat() if changes else None,
        "mean_after": float(np.mean(scores[changes[-1] :])) if changes else None,
        "mean_before": float(np.mean(scores[: changes[0]])) if changes else None,
    }


def score_column(predictions: pa.Table, task: Task) -> str:
    """The output column whose value is the model's score: P(class 1) for a binary model that
    answers probabilities (``out_output_1``), else the single output."""
    names = predictions.column_names
    if task == "binary" and f"{OUTPUT_PREFIX}output_1" in names:
        return f"{OUTPUT_PREFIX}output_1"
    if f"{OUTPUT_PREFIX}output" in names:
        return f"{OUTPUT_PREFIX}output"
    outputs = ", ".join(n for n in names if n.startswith(OUTPUT_PREFIX))
    raise InvalidInput(f"the predictions have no output to score ({outputs})", field="outputs")


def latest_outcomes(outcomes: pa.Table) -> pa.Table:
    """One outcome per (request, row): duplicates of an idempotency key and later corrections
    collapse to the latest record (a missing row means row 0). Outcomes keyed by unit alone
    are left to the experiments' analysis."""
    outcomes = outcomes.filter(pc.is_valid(outcomes.column("request_id")))
    rows = pc.fill_null(outcomes.column("row"), 0).cast(pa.int32())
    outcomes = outcomes.set_column(outcomes.column_names.index("row"), "row", rows)
    if outcomes.num_rows == 0:
        return outcomes
    order = pc.sort_indices(outcomes, [("time", "descending")])
    ordered = outcomes.take(order)
    seen: set[tuple[str, int]] = set()
    keep = []
    requests = ordered.column("request_id").to_pylist()
    rows = ordered.column("row").to_pylist()
    for index, (request, row) in enumerate(zip(requests, rows, strict=True)):
        key = (request, int(row or 0))
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return ordered.take(pa.array(keep, pa.int64()))


def _performance(
    predictions: pa.Table,
    outcomes: pa.Table,
    task: Task,
    baseline: Mapping[str, float],
    max_change: Mapping[str, float],
    window_s: float,
) -> dict[str, Any]:
    score = score_column(predictions, task)
    left = predictions.select(["time", "request_id", "row", score])
    right = latest_outcomes(outcomes).select(["request_id", "row", "label"])
    joined = left.join(right, keys=["request_id", "row"], join_type="inner")
    times = pc.divide(
        pc.cast(pc.cast(joined.column("time"), pa.timestamp("us", tz="UTC")), pa.int64()), 1_000_000
    )
    y = joined.column("label").to_numpy()
    s = joined.column(score).to_numpy()
    overall = compute_metrics(task, y, s) if joined.num_rows else dict.fromkeys(METRICS[task])
    windows = windowed(task, times.to_numpy(), y, s, window_s=window_s) if joined.num_rows else []
    found = degradations(
        baseline, overall, {m: v for m, v in max_change.items() if m in METRICS[task]}
    )
    return {
        "task": task,
        "labelled_rows": joined.num_rows,
        "unlabelled_rows": predictions.num_rows - joined.num_rows,
        "overall": overall,
        "baseline": {m: v for m, v in baseline.items() if m in METRICS[task]},
        "windows": [w.to_dict() for w in windows],
        "degradations": [
            {
                "metric": d.metric,
                "baseline": d.baseline,
                "current": d.current,
                "change": d.change,
                "allowed": d.allowed,
                "message": d.message,
            }
            for d in found
        ],
    }
