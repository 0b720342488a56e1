"""Domain-classifier drift: chance-level AUC without drift, joint shifts that per-column tests miss,
categorical columns, determinism, and the stated null spread checked by simulation.

Every call caps the classifier at one thread (``n_threads=1``): the test machine is shared.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from shipyard.errors import InvalidInput
from shipyard.monitoring.multivariate import (
    DEFAULT_AUC_THRESHOLD,
    auc_null_std,
    domain_classifier_drift,
)


def _correlated(seed: int, n: int, rho: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    xy = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    return pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "noise": rng.normal(size=n),
            "flag": rng.random(n) < 0.3,
            "city": rng.choice(["oslo", "rome", "lima"], n),
        }
    )


def test_without_drift_the_auc_is_chance_within_four_null_standard_deviations() -> None:
    result = domain_classifier_drift(
        _correlated(1, 1_000, 0.8), _correlated(2, 1_000, 0.8), n_threads=1, seed=0
    )
    assert abs(result.auc - 0.5) <= 4 * result.null_auc_std, result.auc
    assert not result.drift_detected
    assert result.top_features == ()
    # 1,000 rows per side, 5 folds of 200 + 200: sqrt(2 · 5 · 401 / (12 · 200²)) / 5
    assert result.null_auc_std == pytest.approx(np.sqrt(2 * 5 * 401 / (12 * 200**2)) / 5)
    assert result.effective_threshold == pytest.approx(
        max(DEFAULT_AUC_THRESHOLD, 0.5 + stats.norm.ppf(0.99) * result.null_auc_std)
    )
    assert result.p_value == pytest.approx(stats.norm.sf((result.auc - 0.5) / result.null_auc_std))
    assert len(result.fold_aucs) == 5
    assert result.auc == pytest.approx(np.mean(result.fold_aucs))
    assert result.auc_std == pytest.approx(np.std(result.fold_aucs))
    assert (result.n_reference, result.n_current) == (1_000, 1_000)
    assert result.columns == ("x", "y", "noise", "flag", "city")
    assert result.categorical_columns == ("city",)


def test_a_correlation_flip_with_identical_marginals_is_found_where_ks_sees_nothing() -> None:
    reference, current = _correlated(3, 1_000, 0.8), _correlated(4, 1_000, -0.8)
    for column in ("x", "y"):  # each marginal is N(0, 1) on both sides
        assert stats.ks_2samp(reference[column], current[column]).pvalue > 0.01

    result = domain_classifier_drift(reference, current, top_k=3, n_threads=1, seed=0)

    assert result.drift_detected
    assert result.auc > 0.8
    assert len(result.top_features) == 3
    assert result.p_value < 1e-9
    assert {feature.column for feature in result.top_features[:2]} == {"x", "y"}
    assert all(feature.importance > 0.1 for feature in result.top_features[:2])
    assert all(abs(feature.importance) < 0.05 for feature in result.top_features[2:])


def test_categorical_columns_carry_a_joint_shift_their_marginals_hide() -> None:
    # The city picks the sign of x: cities and x keep their marginals, but the pairing flips.
    rng = np.random.default_rng(5)

    def frame(flip: bool, n: int = 1_000) -> pd.DataFrame:
        city = rng.choice(["oslo", "rome"], n)
        magnitude = np.abs(rng.normal(size=n))
        positive = (city == "oslo") != flip
        rare = np.array([f"id{i}" for i in rng.integers(0, 400, n)], dtype=object)
        rare[rng.random(n) < 0.1] = None  # nulls in a column past the 254 coded values
        return pd.DataFrame(
            {
                "x": np.where(positive, magnitude, -magnitude),
                "city": pd.Categorical(city),  # an Arrow dictionary column
                "rare": rare,
            }
        )

    reference, current = frame(flip=False), frame(flip=True)
    assert stats.ks_2samp(reference["x"], current["x"]).pvalue > 0.01
    table = pd.crosstab(
        np.r_[np.zeros(1_000), np.ones(1_000)], np.r_[reference["city"], current["city"]]
    )
    assert stats.chi2_contingency(table).pvalue > 0.01

    result = domain_classifier_drift(reference, current, n_threads=1, seed=0)

    assert result.categorical_columns == ("city", "rare")
    assert result.drift_detected and result.auc > 0.9
    assert {feature.column for feature in result.top_features[:2]} == {"x", "city"}

    # Without the categorical column the pairing is invisible: x alone has not moved.
    alone = domain_classifier_drift(reference, current, columns=["x"], n_threads=1, seed=0)
    assert not alone.drift_detected


def test_same_seed_same_result_and_a_json_report() -> None:
    reference, current = _correlated(6, 600, 0.5), _correlated(7, 600, 0.0)
    first = domain_classifier_drift(reference, current, max_iter=40, n_threads=1, seed=42)
    again = domain_classifier_drift(reference, current, max_iter=40, n_threads=1, seed=42)
    assert first == again
    other = domain_classifier_drift(reference, current, max_iter=40, n_threads=1, seed=43)
    assert other.fold_aucs != first.fold_aucs  # the seed reaches the folds and the model

    report = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    assert report["auc"] == first.auc
    assert report["fold_aucs"] == list(first.fold_aucs)
    assert report["drift_detected"] == first.drift_detected
    assert report["top_features"][0]["column"] == first.top_features[0].column
    assert report["importance_method"].startswith("permutation")


def test_sampling_caps_rows_and_timestamps_and_one_sided_columns_are_skipped() -> None:
    reference = _correlated(8, 3_000, 0.2).assign(
        seen=pd.Timestamp("2024-01-01"), only_reference=1.0
    )
    current = _correlated(9, 500, 0.2).assign(seen=datetime(2024, 6, 1), only_current="a")
    result = domain_classifier_drift(
        reference, pa.Table.from_pandas(current), max_rows=800, n_threads=1, seed=0
    )
    assert (result.n_reference, result.n_current) == (800, 500)
    assert "seen" not in result.columns
    assert set(result.skipped_columns) == {"seen", "only_reference", "only_current"}
    assert not result.drift_detected  # the timestamp, which differs by construction, was left out
    assert result.top_features == ()  # importances are computed for a drift only


def test_infinite_values_and_integer_float_mixes_are_encoded() -> None:
    rng = np.random.default_rng(10)
    reference = pd.DataFrame({"a": rng.integers(0, 5, 400), "b": rng.normal(size=400)})
    current = pd.DataFrame({"a": rng.integers(0, 5, 400).astype(float), "b": rng.normal(size=400)})
    current.loc[:199, "b"] = np.inf  # half the current rows hold +inf: a shift the model must see
    result = domain_classifier_drift(reference, current, n_threads=1, seed=0)
    assert result.drift_detected
    assert result.top_features[0].column == "b"


def test_bad_arguments_are_rejected_with_the_field_named() -> None:
    reference, current = _correlated(11, 100, 0.0), _correlated(12, 100, 0.0)
    with pytest.raises(InvalidInput) as info:
        domain_classifier_drift(reference, current, columns=["x", "missing"])
    assert info.value.field == "columns" and "missing" in info.value.message
    with pytest.raises(InvalidInput) as info:
        domain_classifier_drift(reference, current.assign(x="text"), columns=["x"])
    assert info.value.field == "x"
    with pytest.raises(InvalidInput) as info:
        domain_classifier_drift(reference, current, threshold=0.4)
    assert info.value.field == "threshold"
    with pytest.raises(InvalidInput) as info:
        domain_classifier_drift(reference.head(6), current)
    assert info.value.field == "reference"
    times = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=100, freq="h")})
    with pytest.raises(InvalidInput) as info:
        domain_classifier_drift(times, times)
    assert info.value.field == "columns" and "t" in info.value.message


def test_null_std_matches_the_mann_whitney_variance() -> None:
    # One fold: the Mann–Whitney null variance of U/(n0·n1) (scipy's normal approximation of
    # mannwhitneyu uses sqrt(n0·n1·(n0+n1+1)/12) for U), times the factor 2 for fold dependence.
    n0, n1 = 120, 80
    u_std = np.sqrt(n0 * n1 * (n0 + n1 + 1) / 12)
    assert auc_null_std([n0], [n1]) == pytest.approx(np.sqrt(2) * u_std / (n0 * n1))
    assert auc_null_std([n0] * 4, [n1] * 4) == pytest.approx(auc_null_std([n0], [n1]) / 2)


@pytest.mark.slow
def test_null_spread_and_false_alarm_rate_hold_by_simulation() -> None:
    # 40 seeded replications without drift, 200 rows per side; threshold 0.5 so that the null
    # quantile alone decides, at alpha = 0.1.
    replications, alpha = 40, 0.1
    aucs, alarms, null_std = [], 0, 0.0
    for seed in range(replications):
        rng = np.random.default_rng(1_000 + seed)
        frames = [
            pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)}) for _ in range(2)
        ]
        result = domain_classifier_drift(
            *frames, threshold=0.5, alpha=alpha, max_iter=30, top_k=0, n_threads=1, seed=seed
        )
        aucs.append(result.auc)
        alarms += result.drift_detected
        null_std = result.null_auc_std
    assert alarms <= stats.binom.isf(0.001, replications, alpha)
    # The stated spread is not smaller than the observed one (a 99.9% chi-square upper bound on
    # the sample standard deviation of 40 draws), and not wildly conservative either.
    observed = float(np.std(aucs, ddof=1))
    upper = null_std * np.sqrt(stats.chi2.isf(0.001, replications - 1) / (replications - 1))
    assert observed <= upper
    assert observed >= 0.5 * null_std
    assert abs(float(np.mean(aucs)) - 0.5) <= 4 * null_std / np.sqrt(replications)
