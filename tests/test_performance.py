"""Quality metrics from delayed labels: checked against scikit-learn, per window, degradation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from shipyard.core.performance import compute_metrics, degradations, windowed
from shipyard.errors import InvalidInput


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_equal_scikit_learns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    score = np.round(np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1), 2)  # rounded: many ties
    got = compute_metrics("binary", y, score)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, score >= 0.5), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, score), abs=1e-9)


def test_regression_metrics_equal_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    y, prediction = rng.normal(size=300), rng.normal(size=300)
    got = compute_metrics("regression", y, prediction)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, prediction)), abs=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, prediction), abs=1e-12)


def test_auc_is_none_with_one_class_and_bad_labels_are_refused() -> None:
    assert compute_metrics("binary", [1, 1], [0.2, 0.9])["roc_auc"] is None
    with pytest.raises(InvalidInput, match="0 or 1"):
        compute_metrics("binary", [0, 2], [0.1, 0.2])
    with pytest.raises(InvalidInput, match="task"):
        compute_metrics("ranking", [0], [0.1])  # type: ignore[arg-type]


def test_windows_split_by_prediction_time_and_skip_empty_ones() -> None:
    times = np.array([0, 10, 59, 60, 61, 300])  # windows of 60 s: [0,60) [60,120) … [300,360)
    y = np.array([1, 0, 1, 1, 0, 1])
    score = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.6])
    out = windowed("binary", times, y, score, window_s=60)
    assert [(w.start_s, w.rows) for w in out] == [(0, 3), (60, 2), (300, 1)]
    assert out[0].metrics["accuracy"] == pytest.approx(2 / 3)
    assert out[1].metrics["roc_auc"] == 1.0


def test_degradation_respects_each_metrics_direction() -> None:
    baseline = {"roc_auc": 0.9, "log_loss": 0.3, "accuracy": 0.85}
    current = {"roc_auc": 0.8, "log_loss": 0.5, "accuracy": 0.84}
    found = degradations(baseline, current, {"roc_auc": 0.05, "log_loss": 0.1, "accuracy": 0.05})
    assert [d.metric for d in found] == ["roc_auc", "log_loss"]
    assert "roc_auc dropped from 0.9 to 0.8" in found[0].message
    assert degradations(baseline, {"roc_auc": 0.95}, {"roc_auc": 0.0}) == []  # better is fine
