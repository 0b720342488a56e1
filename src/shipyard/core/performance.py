"""Model quality from predictions joined to their (late) outcomes: metrics, windows, degradation.

Definitions (the same as scikit-learn's, checked against it in the tests):

- ``accuracy``: the fraction of rows whose predicted label equals the outcome; for a binary model
  scoring P(class 1), the predicted label is ``score >= 0.5``.
- ``roc_auc``: the probability that a random positive scores above a random negative, ties
  counted half (Mann–Whitney U / (n_pos · n_neg)); None when one class is absent.
- ``log_loss``: mean of −[y·log p + (1−y)·log(1−p)] with p clipped to [ε, 1−ε], ε = 1e-15.
- ``rmse``, ``mae``: root mean squared and mean absolute error (regression).

A window's metrics are computed over the rows whose prediction time falls in
``[start + k·window, start + (k+1)·window)``; windows with no labelled rows are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from shipyard.errors import InvalidInput

Task = Literal["binary", "regression"]
HIGHER_IS_BETTER = {
    "accuracy": True,
    "roc_auc": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}
METRICS: dict[Task, tuple[str, ...]] = {
    "binary": ("accuracy", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae"),
}
_EPS = 1e-15

Floats = npt.NDArray[np.float64]


def accuracy(y: Floats, score: Floats) -> float:
    return float(np.mean((score >= 0.5) == (y == 1)))


def roc_auc(y: Floats, score: Floats) -> float | None:
    positives = y == 1
    n_pos = int(positives.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(score)  # average ranks: ties count half
    u = float(ranks[positives].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def log_loss(y: Floats, score: Floats) -> float:
    p = np.clip(score, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(y: Floats, prediction: Floats) -> float:
    return float(np.sqrt(np.mean((prediction - y) ** 2)))


def mae(y: Floats, prediction: Floats) -> float:
    return float(np.mean(np.abs(prediction - y)))


def compute_metrics(task: Task, y: Any, score: Any) -> dict[str, float | None]:
    """Every metric of ``task`` on one set of labelled rows."""
    if task not in METRICS:
        raise InvalidInput(f"task {task!r} is not one of {', '.join(METRICS)}", field="task")
    y_arr = np.asarray(y, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    if y_arr.shape != s_arr.shape or y_arr.ndim != 1:
        raise InvalidInput(
            f"labels {y_arr.shape} and predictions {s_arr.shape} must be 1-D of one length",
            field="labels",
        )
    if task == "binary":
        bad = ~np.isin(y_arr, (0.0, 1.0))
        if bad.any():
            raise InvalidInput(
                f"binary labels must be 0 or 1; got {y_arr[bad][:3].tolist()}", field="label"
            )
        return {
            "accuracy": accuracy(y_arr, s_arr),
            "roc_auc": roc_auc(y_arr, s_arr),
            "log_loss": log_loss(y_arr, s_arr),
        }
    return {"rmse": rmse(y_arr, s_arr), "mae": mae(y_arr, s_arr)}


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """Metrics of the labelled predictions made in ``[start_s, end_s)`` (epoch seconds)."""

    start_s: float
    end_s: float
    rows: int
    metrics: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "rows": self.rows, **self.metrics}


def windowed(
    task: Task,
    times_s: Any,
    y: Any,
    score: Any,
    *,
    window_s: float,
    start_s: float | None = None,
) -> list[WindowMetrics]:
    """Metrics per time window of the prediction time, oldest first."""
    if window_s <= 0:
        raise InvalidInput(f"window must be positive, got {window_s} s", field="window")
    t = np.asarray(times_s, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    if not len(t):
        return []
    origin = float(t.min()) if start_s is None else start_s
    index = np.floor((t - origin) / window_s).astype(np.int64)
    out = []
    for k in np.unique(index[index >= 0]):
        rows = index == k
        lo = origin + float(k) * window_s
        out.append(
            WindowMetrics(
                lo, lo + window_s, int(rows.sum()), compute_metrics(task, y_arr[rows], s_arr[rows])
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Degradation:
    """A metric that moved the wrong way by more than the allowed amount against its baseline."""

    metric: str
    baseline: float
    current: float
    change: float  # current - baseline
    allowed: float

    @property
    def message(self) -> str:
        direction = "dropped" if HIGHER_IS_BETTER[self.metric] else "rose"
        return (
            f"{self.metric} {direction} from {self.baseline:.4g} to {self.current:.4g} "
            f"(allowed change {self.allowed:.4g})"
        )


def degradations(
    baseline: Mapping[str, float],
    current: Mapping[str, float | None],
    max_change: Mapping[str, float],
) -> list[Degradation]:
    """Metrics worse than their baseline by more than ``max_change`` (absolute), in the metric's
    bad direction (lower for accuracy/AUC, higher for losses and errors)."""
    out = []
    for metric, allowed in max_change.items():
        if metric not in HIGHER_IS_BETTER:
            raise InvalidInput(
                f"unknown metric {metric!r}; known: {', '.join(HIGHER_IS_BETTER)}", field="metric"
            )
        value = current.get(metric)
        base = baseline.get(metric)
        if value is None or base is None:
            continue
        worse = base - value if HIGHER_IS_BETTER[metric] else value - base
        if worse > allowed:
            out.append(Degradation(metric, base, value, value - base, allowed))
    return out
