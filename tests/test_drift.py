"""Drift statistics (shipyard.core.drift) and the drift service (shipyard.monitoring.drift).

Three kinds of checks:
- every statistic equals scipy's on the same inputs to 1e-9 (relative, 1e-12 absolute);
- simulations, seeded: on data without drift the p-value tests raise false alarms at the chosen
  rate (binomial bounds at 4.5 sigma); injected drift is found with the stated power; the
  distance thresholds are not crossed by no-drift data at large n;
- the service reads DataFrames, Arrow tables and Parquet (chunked, several files) alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import special, stats
from scipy.spatial import distance

from shipyard.core.drift import (
    CategoricalSample,
    ColumnDrift,
    NumericSample,
    aligned_counts,
    categorical_drift,
    chi2_contingency_test,
    chisquare_test,
    drift_share,
    jensenshannon_distance,
    ks_test,
    normed_wasserstein,
    numeric_bin_counts,
    numeric_bin_edges,
    numeric_drift,
    psi,
    select_method,
    wasserstein_distance_sorted,
)
from shipyard.core.profile import profile_table
from shipyard.errors import InvalidInput
from shipyard.monitoring.drift import DriftReport, compute_drift


def approx(expected: float) -> Any:
    """Equal to 1e-9 relative (1e-12 absolute, for values near 0)."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def binomial_bounds(trials: int, rate: float, sigmas: float = 4.5) -> tuple[int, int]:
    """Counts outside [low, high] have probability ~2·Φ(−sigmas) (≈ 7e-6 at 4.5) under ``rate``."""
    tail = stats.norm.sf(sigmas)
    return int(stats.binom.ppf(tail, trials, rate)), int(stats.binom.isf(tail, trials, rate))


def numeric_pair(seed: int, n: int, m: int, *, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, 1.0, n)
    v = rng.normal(0.3, 1.5, m)
    if ties:  # heavy ties, and values shared by both samples
        u, v = np.round(u, 1), np.round(v, 1)
    return u, v


SIZES = [
    pytest.param(1, 1, id="1x1"),
    pytest.param(1, 9, id="1x9"),
    pytest.param(7, 7, id="7x7"),
    pytest.param(40, 64, id="40x64"),
    pytest.param(333, 200, id="333x200"),
    pytest.param(1000, 999, id="1000x999"),
    pytest.param(4000, 6000, id="4000x6000-exact-ks"),
    pytest.param(12_000, 9_001, id="12000x9001-asymptotic-ks"),
    pytest.param(20_000, 20_000, id="20000x20000-equal"),
]


# ---------------------------------------------------------------- statistics vs scipy
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_ks_matches_scipy(n: int, m: int, ties: bool) -> None:
    u, v = numeric_pair(n * 7 + m, n, m, ties=ties)
    d, p = ks_test(NumericSample.from_values(u), NumericSample.from_values(v))
    expected = stats.ks_2samp(u, v)
    assert d == approx(expected.statistic)
    assert p == approx(expected.pvalue)


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize(("n", "m"), SIZES)
def test_wasserstein_matches_scipy(n: int, m: int, ties: bool) -> None:
    u, v = numeric_pair(n * 3 + m, n, m, ties=ties)
    w = wasserstein_distance_sorted(np.sort(u), np.sort(v))
    assert w == approx(stats.wasserstein_distance(u, v))
    normed = normed_wasserstein(NumericSample.from_values(u), NumericSample.from_values(v))
    expected = stats.wasserstein_distance(u, v) / max(np.std(u), 1e-3)
    assert normed == approx(expected)


def test_wasserstein_of_identical_samples_is_zero_and_constant_reference_uses_the_floor() -> None:
    x = np.sort(np.random.default_rng(5).normal(size=101))
    assert wasserstein_distance_sorted(x, x) == 0.0
    constant = NumericSample.from_values(np.full(50, 2.0))
    shifted = NumericSample.from_values(np.full(30, 2.5))
    # W1 = 0.5; the reference's std is 0, so the norm is the floor 1e-3
    assert normed_wasserstein(constant, shifted) == approx(500.0)


def test_numeric_sample_drops_nan_and_counts_infinities() -> None:
    sample = NumericSample.from_values([3.0, np.nan, -np.inf, 1.0, np.inf, np.inf, 2.0])
    assert sample.values.tolist() == [1.0, 2.0, 3.0]
    assert (sample.neg_inf, sample.pos_inf, sample.size, sample.binned_size) == (1, 2, 3, 6)


CATEGORY_CASES = [
    pytest.param([30, 70], [45, 55], id="2-categories-yates"),
    pytest.param([100, 50, 25], [90, 60, 20], id="3-categories"),
    pytest.param(
        [5, 0, 12, 40, 3, 8, 1, 0, 9, 22], [7, 3, 10, 35, 0, 9, 4, 2, 0, 30], id="10-sparse"
    ),
    pytest.param([20, 30, 0], [10, 25, 15], id="unseen-in-reference"),
    pytest.param([20, 30, 15], [10, 25, 0], id="missing-in-current"),
]


@pytest.mark.parametrize(("ref", "cur"), CATEGORY_CASES)
def test_chi2_contingency_matches_scipy(ref: list[int], cur: list[int]) -> None:
    table = np.array([ref, cur])
    table = table[:, table.sum(axis=0) > 0]  # scipy refuses categories empty on both sides
    for correction in (True, False):
        expected = stats.chi2_contingency(table, correction=correction)
        statistic, p = chi2_contingency_test(ref, cur, correction=correction)
        assert statistic == approx(expected.statistic)
        assert p == approx(expected.pvalue)
    # the default is scipy's: Yates's correction on 2 x 2 tables only
    assert chi2_contingency_test(ref, cur) == chi2_contingency_test(ref, cur, correction=True)


def test_yates_correction_changes_only_two_category_tables() -> None:
    two = chi2_contingency_test([30, 70], [45, 55])
    assert two != chi2_contingency_test([30, 70], [45, 55], correction=False)
    three = ([100, 50, 25], [90, 60, 20])
    assert chi2_contingency_test(*three) == chi2_contingency_test(*three, correction=False)


def test_chi2_contingency_with_one_category_is_no_evidence() -> None:
    assert chi2_contingency_test([10, 0], [25, 0]) == (0.0, 1.0)


@pytest.mark.parametrize(("ref", "cur"), CATEGORY_CASES)
def test_chisquare_goodness_of_fit_matches_scipy(ref: list[int], cur: list[int]) -> None:
    observed, reference = np.array(cur, dtype=float), np.array(ref, dtype=float)
    expected_counts = reference * observed.sum() / reference.sum()
    statistic, p = chisquare_test(ref, cur)
    if np.any((expected_counts == 0) & (observed > 0)):
        with np.errstate(divide="ignore"):  # scipy divides by the zero expectation
            expected = stats.chisquare(observed, expected_counts)
        assert (statistic, p) == (math.inf, 0.0) == (expected.statistic, expected.pvalue)
        return
    keep = (expected_counts > 0) | (observed > 0)
    expected = stats.chisquare(observed[keep], expected_counts[keep])
    assert statistic == approx(expected.statistic)
    assert p == approx(expected.pvalue)


@pytest.mark.parametrize(("ref", "cur"), CATEGORY_CASES)
def test_jensenshannon_matches_scipy_in_base_2(ref: list[int], cur: list[int]) -> None:
    expected = distance.jensenshannon(np.array(ref, float), np.array(cur, float), base=2)
    assert jensenshannon_distance(ref, cur) == approx(expected)
    assert 0.0 <= jensenshannon_distance(ref, cur) <= 1.0
    # disjoint supports are the maximum distance in base 2
    assert jensenshannon_distance([5, 0], [0, 9]) == approx(1.0)


@pytest.mark.parametrize(("ref", "cur"), CATEGORY_CASES)
def test_psi_is_the_symmetrised_kl_with_epsilon_for_empty_bins(
    ref: list[int], cur: list[int]
) -> None:
    r = np.array(ref, float) / sum(ref)
    c = np.array(cur, float) / sum(cur)
    r[r == 0], c[c == 0] = 1e-4, 1e-4
    expected = float(np.sum(special.rel_entr(c, r) + special.rel_entr(r, c)))
    assert psi(ref, cur) == approx(expected)


def test_psi_known_value() -> None:
    # (0.25 - 0.5)·ln(0.5) + (0.75 - 0.5)·ln(1.5) = 0.25·ln 3
    assert psi([50, 50], [25, 75]) == approx(0.25 * math.log(3))
    assert psi([10, 20, 30], [10, 20, 30]) == 0.0


def test_counts_must_align_and_not_be_empty() -> None:
    with pytest.raises(InvalidInput, match="align"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(InvalidInput, match="current counts are all zero"):
        chi2_contingency_test([1, 2], [0, 0])


def test_numeric_bins_are_the_profiles_bins() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.normal(size=997), [np.nan, np.inf, -np.inf, -np.inf]])
    values[:200] = np.round(values[:200])  # ties: a discrete part
    column = profile_table(pd.DataFrame({"x": values})).columns[0]
    sample = NumericSample.from_values(values)
    edges = numeric_bin_edges(sample)
    assert tuple(edges) == column.bin_edges
    assert tuple(numeric_bin_counts(sample, edges)) == column.bin_counts
    for n in (1, 2, 3, 9, 10, 11, 99, 1000, 1001):
        x = np.sort(rng.normal(size=n))
        direct = np.unique(np.quantile(x, [k / 10 for k in range(1, 10)], method="inverted_cdf"))
        assert np.array_equal(numeric_bin_edges(NumericSample(x)), direct)


def test_aligned_counts_take_the_union_of_categories() -> None:
    categories, ref, cur = aligned_counts(
        CategoricalSample({"a": 5, "b": 9}), CategoricalSample({"b": 1, "c": 4})
    )
    assert categories == ("b", "a", "c")
    assert ref.tolist() == [9, 5, 0] and cur.tolist() == [1, 0, 4]


# ---------------------------------------------------------------- selection and verdicts
def test_select_method_by_kind_and_size() -> None:
    assert select_method("numeric", 1000, 1000) == "ks"
    assert select_method("numeric", 1001, 10) == "ks"  # the smaller side decides
    assert select_method("numeric", 10, 1001) == "ks"
    assert select_method("numeric", 1001, 1001) == "wasserstein"
    assert select_method("categorical", 1000, 1000) == "chi2"
    assert select_method("boolean", 5000, 10) == "chi2"
    assert select_method("boolean", 5000, 1001) == "jensenshannon"
    assert select_method("numeric", 50, 50, max_test_n=20) == "wasserstein"


def test_verdicts_use_p_below_threshold_and_distance_at_or_above() -> None:
    u, v = numeric_pair(1, 300, 300, ties=False)
    ref, cur = NumericSample.from_values(u), NumericSample.from_values(v)
    ks = numeric_drift("x", ref, cur)
    assert (ks.method, ks.threshold, ks.drifted) == ("ks", 0.05, True)
    assert ks.p_value is not None and ks.p_value < 0.05
    assert (ks.reference_count, ks.current_count) == (300, 300)
    strict = numeric_drift("x", ref, cur, threshold=ks.p_value)
    assert strict.drifted is False  # p < threshold is strict
    w = numeric_drift("x", ref, cur, method="wasserstein")
    assert w.p_value is None and w.threshold == 0.1
    assert numeric_drift("x", ref, cur, method="wasserstein", threshold=w.statistic).drifted
    looser = numeric_drift("x", ref, cur, method="wasserstein", thresholds={"wasserstein": 10.0})
    assert (looser.threshold, looser.drifted) == (10.0, False)
    assert ks.psi == approx(psi(ks.histogram.reference, ks.histogram.current))


@pytest.mark.parametrize("method", ["chi2", "chisquare", "jensenshannon", "psi"])
def test_binned_methods_on_numeric_columns_use_the_reference_deciles(method: Any) -> None:
    u, v = numeric_pair(2, 800, 600, ties=False)
    result = numeric_drift(
        "x", NumericSample.from_values(u), NumericSample.from_values(v), method=method
    )
    edges = np.unique(np.quantile(u, [k / 10 for k in range(1, 10)], method="inverted_cdf"))
    ref_bins = np.histogram(u, bins=[-np.inf, *edges, np.inf])[0]
    cur_bins = np.histogram(v, bins=[-np.inf, *edges, np.inf])[0]
    assert result.histogram.reference == tuple(ref_bins)
    assert result.histogram.current == tuple(cur_bins)
    expected = {
        "chi2": lambda: stats.chi2_contingency(np.array([ref_bins, cur_bins])).statistic,
        "chisquare": lambda: stats.chisquare(cur_bins, ref_bins * 600 / 800).statistic,
        "jensenshannon": lambda: distance.jensenshannon(ref_bins, cur_bins, base=2),
        "psi": lambda: psi(ref_bins, cur_bins),
    }[method]()
    assert result.statistic == approx(expected)


def test_categorical_columns_refuse_numeric_methods_and_bad_thresholds() -> None:
    ref, cur = CategoricalSample({"a": 3}), CategoricalSample({"a": 2, "b": 1})
    with pytest.raises(InvalidInput, match="needs numeric values"):
        categorical_drift("c", ref, cur, method="ks")
    with pytest.raises(InvalidInput, match=r"must be in \(0, 1\)"):
        categorical_drift("c", ref, cur, method="chi2", threshold=5.0)
    with pytest.raises(InvalidInput, match="unknown"):
        categorical_drift("c", ref, cur, method="bogus")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no values in the current"):
        categorical_drift("c", ref, CategoricalSample({}))


def test_column_drift_round_trips_through_strict_json_with_an_infinite_statistic() -> None:
    result = categorical_drift(
        "c", CategoricalSample({"a": 10}), CategoricalSample({"a": 4, "new": 3}), method="chisquare"
    )
    assert (result.statistic, result.p_value, result.drifted) == (math.inf, 0.0, True)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["statistic"] == "inf"
    assert ColumnDrift.from_dict(json.loads(text)) == result


def test_drift_share_and_dataset_verdict() -> None:
    def result(drifted: bool) -> ColumnDrift:
        return ColumnDrift("c", "numeric", "psi", 0.0, None, 0.1, drifted, 0.0, 1, 1)

    assert drift_share([result(True), result(False)]) == (0.5, True)
    assert drift_share([result(True), result(False), result(False)]) == (1 / 3, False)
    assert drift_share([result(True)] * 3 + [result(False)], 0.8) == (0.75, False)
    assert drift_share([]) == (0.0, False)
    with pytest.raises(InvalidInput, match="share threshold"):
        drift_share([], 0.0)


# ---------------------------------------------------------------- simulations
def test_no_drift_false_alarm_rate_of_ks_matches_alpha() -> None:
    # 400 runs x 3 columns of 200 values per side, all from one distribution; exact KS p-values
    rng = np.random.default_rng(20240501)
    alpha, runs, columns, n = 0.05, 400, 3, 200
    ref = rng.normal(size=(runs * columns, n))
    cur = rng.normal(size=(runs * columns, n))
    alarms = sum(
        numeric_drift("x", NumericSample.from_values(r), NumericSample.from_values(c)).drifted
        for r, c in zip(ref, cur, strict=True)
    )
    low, high = binomial_bounds(runs * columns, alpha)
    assert low <= alarms <= high, (alarms, low, high)


def test_no_drift_false_alarm_rate_of_chi2_matches_alpha() -> None:
    # 4 categories (3 degrees of freedom, no continuity correction), 300 values per side
    rng = np.random.default_rng(20240502)
    alpha, trials, n = 0.05, 1200, 300
    p = [0.4, 0.3, 0.2, 0.1]
    alarms = 0
    for _ in range(trials):
        ref = rng.multinomial(n, p)
        cur = rng.multinomial(n, p)
        result = categorical_drift(
            "c",
            CategoricalSample(dict(zip("abcd", ref.tolist(), strict=True))),
            CategoricalSample(dict(zip("abcd", cur.tolist(), strict=True))),
        )
        assert result.method == "chi2"
        alarms += result.drifted
    low, high = binomial_bounds(trials, alpha)
    assert low <= alarms <= high, (alarms, low, high)


def test_injected_drift_is_found_with_the_stated_power_and_alpha_elsewhere() -> None:
    # 10 numeric columns, 500 rows per side (KS); columns 0-2 shift by 0.3 sd in the current
    # window. Stated power of KS at alpha 0.05 for that shift: 0.984 (5,000 seeded runs).
    rng = np.random.default_rng(7)
    runs, n, k, width = 40, 500, 3, 10
    found = alarms = 0
    for _ in range(runs):
        reference = pd.DataFrame(
            rng.normal(size=(n, width)), columns=[f"x{j}" for j in range(width)]
        )
        current = pd.DataFrame(rng.normal(size=(n, width)), columns=reference.columns)
        current.iloc[:, :k] += 0.3
        report = compute_drift(reference, current, max_workers=1)
        assert all(r.method == "ks" for r in report.columns)
        drifted = set(report.drifted_columns)
        found += len(drifted & {f"x{j}" for j in range(k)})
        alarms += len(drifted - {f"x{j}" for j in range(k)})
    low, _ = binomial_bounds(runs * k, 0.984)
    assert found >= low, (found, low)
    low, high = binomial_bounds(runs * (width - k), 0.05)
    assert low <= alarms <= high, (alarms, low, high)


def test_injected_drift_at_large_n_is_found_by_the_distances_and_nothing_else() -> None:
    # 5,000 rows per side: normed Wasserstein for numeric, Jensen-Shannon for categorical.
    # Effect sizes: mean shift 0.25 sd (normed W1 ~ 0.25 > 0.1); category mix
    # (0.4, 0.3, 0.2, 0.1) -> uniform (JS distance 0.20 > 0.1). Without drift, at 5,000 rows per
    # side, normed W1 >= 0.1 in 0 of 20,000 simulated runs (99.9% quantile 0.066), JS in 0 of
    # 4,000 (99.9% quantile 0.043): the expected result is exact, not statistical.
    rng = np.random.default_rng(8)
    n = 5000
    for _ in range(5):
        reference = pd.DataFrame({f"x{j}": rng.normal(size=n) for j in range(6)})
        current = pd.DataFrame({f"x{j}": rng.normal(size=n) for j in range(6)})
        current["x0"] += 0.25
        current["x1"] += 0.25
        for j, drift in enumerate([True, False, False, False]):
            labels = np.array(list("abcd"))
            reference[f"c{j}"] = rng.choice(labels, n, p=[0.4, 0.3, 0.2, 0.1])
            current[f"c{j}"] = rng.choice(
                labels, n, p=[0.25] * 4 if drift else [0.4, 0.3, 0.2, 0.1]
            )
        report = compute_drift(reference, current)
        assert report.drifted_columns == ["x0", "x1", "c0"]
        methods = {r.column: r.method for r in report.columns}
        assert methods["x0"] == "wasserstein" and methods["c0"] == "jensenshannon"
        assert report.drift_share == pytest.approx(0.3) and not report.dataset_drift


def test_distance_thresholds_are_not_reached_without_drift_at_large_n() -> None:
    # 100,000 values per side, 10 runs: normed W1 and JS (10 categories) stay far below 0.1 —
    # 0 of 10 runs exceed (the largest of 20,000 offline runs at 5,000 rows was 0.08; at 100,000
    # the statistics shrink by another sqrt(20)). Near the switch (1,001 rows per side) normed
    # W1 >= 0.1 in ~4% of no-drift runs of normal data; see the next test.
    rng = np.random.default_rng(9)
    n, p = 100_000, np.arange(1, 11) / 55
    largest_w = largest_js = 0.0
    for _ in range(10):
        w = normed_wasserstein(
            NumericSample.from_values(rng.normal(size=n)),
            NumericSample.from_values(rng.normal(size=n)),
        )
        js = jensenshannon_distance(rng.multinomial(n, p), rng.multinomial(n, p))
        largest_w, largest_js = max(largest_w, w), max(largest_js, js)
    assert largest_w < 0.025 and largest_js < 0.025, (largest_w, largest_js)


def test_normed_wasserstein_false_alarms_just_above_the_switch_are_as_documented() -> None:
    # Stated: at 1,001 normal values per side normed W1 >= 0.1 in 3.96% of no-drift runs
    # (20,000 seeded runs offline). This checks that figure by simulation.
    rng = np.random.default_rng(10)
    runs, n = 1000, 1001
    ref = np.sort(rng.normal(size=(runs, n)), axis=1)
    cur = np.sort(rng.normal(size=(runs, n)), axis=1)
    alarms = sum(
        normed_wasserstein(NumericSample(r), NumericSample(c)) >= 0.1
        for r, c in zip(ref, cur, strict=True)
    )
    low, high = binomial_bounds(runs, 0.0396)
    assert low <= alarms <= high, (alarms, low, high)


# ---------------------------------------------------------------- the service
def mixed_frames(seed: int, n_ref: int, n_cur: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(n: int, shift: float, mix: list[float]) -> pd.DataFrame:
        x = rng.normal(shift, 1.0, n)
        x[rng.random(n) < 0.05] = np.nan
        return pd.DataFrame(
            {
                "x": x,
                "count": rng.poisson(3 + shift, n),
                "colour": rng.choice(["red", "green", "blue", "teal"], n, p=mix),
                "flag": rng.random(n) < 0.3 + shift / 10,
                "at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="s"),
                "score": rng.random(n) + shift / 5,
            }
        )

    return frame(n_ref, 0.0, [0.4, 0.3, 0.2, 0.1]), frame(n_cur, 0.5, [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(("n_ref", "n_cur"), [(400, 300), (3000, 2500)], ids=["tests", "distances"])
def test_service_statistics_equal_scipy_on_the_raw_columns(n_ref: int, n_cur: int) -> None:
    reference, current = mixed_frames(1, n_ref, n_cur)
    report = compute_drift(reference, current, prediction_columns=["score"])
    by_name = {r.column: r for r in report.columns}
    assert list(by_name) == ["x", "count", "colour", "flag"]
    x_ref, x_cur = reference["x"].dropna().to_numpy(), current["x"].dropna().to_numpy()
    x = by_name["x"]
    assert (x.reference_count, x.current_count) == (len(x_ref), len(x_cur))
    small = n_ref <= 1000
    if small:
        expected = stats.ks_2samp(x_ref, x_cur)
        assert x.method == "ks"
        assert x.statistic == approx(expected.statistic)
        assert x.p_value == approx(expected.pvalue)
    else:
        assert x.method == "wasserstein" and x.p_value is None
        expected_w = stats.wasserstein_distance(x_ref, x_cur) / np.std(x_ref)
        assert x.statistic == approx(expected_w)
    for name in ("colour", "flag"):
        table = pd.crosstab(
            np.r_[np.zeros(n_ref), np.ones(n_cur)],
            np.r_[reference[name].astype(str), current[name].astype(str)],
        ).to_numpy()
        result = by_name[name]
        if small:
            assert result.method == "chi2"
            expected_chi2 = stats.chi2_contingency(table)  # Yates on the 2 x 2 boolean table
            assert result.statistic == approx(expected_chi2.statistic)
            assert result.p_value == approx(expected_chi2.pvalue)
        else:
            assert result.method == "jensenshannon"
            expected_js = distance.jensenshannon(table[0], table[1], base=2)
            assert result.statistic == approx(expected_js)
    assert [r.column for r in report.predictions] == ["score"]
    assert report.prediction_drift == report.predictions[0].drifted
    assert [(s.column, s.reason) for s in report.skipped] == [
        ("at", "kind timestamp is not tested for drift")
    ]
    assert report.reference.rows == n_ref and report.current.rows == n_cur


def test_dataframe_arrow_and_chunked_parquet_give_the_same_report(tmp_path: Path) -> None:
    reference, current = mixed_frames(2, 2000, 1500)
    expected = compute_drift(reference, current, prediction_columns=["score"]).to_dict()
    parts = [current.iloc[:700], current.iloc[700:701], current.iloc[701:]]
    for i, part in enumerate(parts):
        part.to_parquet(tmp_path / f"window-{i}.parquet", index=False)
    reference.to_parquet(tmp_path / "reference.parquet", index=False, row_group_size=300)
    sources: list[tuple[Any, Any]] = [
        (pa.Table.from_pandas(reference, preserve_index=False), pa.Table.from_pandas(current)),
        (tmp_path / "reference.parquet", str(tmp_path / "window-*.parquet")),
        (str(tmp_path / "reference.parquet"), [tmp_path / f"window-{i}.parquet" for i in range(3)]),
    ]
    for ref_source, cur_source in sources:
        for chunk_rows in (97, 100_000):
            got = compute_drift(
                ref_source, cur_source, prediction_columns=["score"], chunk_rows=chunk_rows
            ).to_dict()
            for key in ("reference", "current"):
                assert got[key]["rows"] == expected[key]["rows"]
                got[key] = expected[key]
            assert got == expected


def test_parquet_dictionary_columns_and_a_directory_of_files(tmp_path: Path) -> None:
    labels = pa.array(["a", "b", "c"])
    for i, seed in enumerate((1, 2)):
        indices = np.random.default_rng(seed).integers(0, 3, 1000).astype(np.int32)
        table = pa.table({"c": pa.DictionaryArray.from_arrays(pa.array(indices), labels)})
        (tmp_path / "ref").mkdir(exist_ok=True)
        pq.write_table(table, tmp_path / "ref" / f"part-{i}.parquet", row_group_size=128)
    frame = pd.DataFrame({"c": np.random.default_rng(3).choice(["a", "b", "c", "d"], 900)})
    report = compute_drift(tmp_path / "ref", frame, chunk_rows=50)
    result = report.columns[0]
    assert result.reference_count == 2000 and result.current_count == 900
    counts = dict(zip(result.histogram.categories, result.histogram.reference, strict=False))
    both = np.concatenate([np.random.default_rng(s).integers(0, 3, 1000) for s in (1, 2)])
    assert counts == {k: int(np.count_nonzero(both == i)) for i, k in enumerate("abc")} | {"d": 0}


def test_reference_profile_supplies_the_numeric_bins() -> None:
    reference, current = mixed_frames(3, 2000, 2000)
    profile = profile_table(reference, bins=4)
    report = compute_drift(reference, current, columns=["x"], reference_profile=profile)
    x_profile = profile.find_column("x")
    assert x_profile is not None
    assert report.columns[0].histogram.edges == x_profile.bin_edges
    assert report.columns[0].histogram.reference == x_profile.bin_counts


def test_overrides_per_column_and_per_method() -> None:
    reference, current = mixed_frames(4, 2000, 2000)
    report = compute_drift(
        reference,
        current,
        columns=["x", "colour", "count"],
        methods={"x": "ks", "colour": "chisquare"},
        thresholds={"ks": 0.001, "wasserstein": 5.0},
        column_thresholds={"colour": 0.01},
    )
    x, colour, count = report.columns
    assert (x.method, x.threshold) == ("ks", 0.001)
    assert (colour.method, colour.threshold) == ("chisquare", 0.01)
    assert (count.method, count.threshold, count.drifted) == ("wasserstein", 5.0, False)


def test_skipped_columns_and_input_errors() -> None:
    reference = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"], "gone": [1, 2, 3]})
    current = pd.DataFrame({"a": [None, None, None], "b": [1.5, 2.5, 3.5]}, dtype=object)
    current["a"] = current["a"].astype(float)
    report = compute_drift(reference, current)
    assert report.columns == ()
    assert [(s.column, s.reason) for s in report.skipped] == [
        ("a", "no values in the current data"),
        ("b", "kind differs: reference categorical, current numeric"),
        ("gone", "missing from the current data"),
    ]
    assert (report.drift_share, report.dataset_drift) == (0.0, False)
    with pytest.raises(InvalidInput, match="'gone' is not in the current data"):
        compute_drift(reference, current, columns=["gone"])
    with pytest.raises(InvalidInput, match="methods names columns that are not compared: zz"):
        compute_drift(reference, reference, methods={"zz": "ks"})
    stamps = pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]), "y": [1.0]})
    named = compute_drift(stamps, stamps, columns=["t"], prediction_columns=["y"])
    assert [(s.column, s.reason) for s in named.skipped] == [
        ("t", "kind timestamp is not tested for drift")
    ]
    assert [r.column for r in named.predictions] == ["y"] and not named.prediction_drift
    with pytest.raises(InvalidInput, match="no Parquet file matches"):
        compute_drift("/nonexistent/*.parquet", reference)
    with pytest.raises(InvalidInput, match="must be a pandas DataFrame"):
        compute_drift(42, reference)
    with pytest.raises(InvalidInput, match="wasserstein threshold"):
        compute_drift(reference, reference, thresholds={"wasserstein": -1})


def test_report_round_trips_through_strict_json() -> None:
    reference, current = mixed_frames(5, 1500, 800)
    report = compute_drift(
        reference, current, prediction_columns=["score"], reference_description="train v3"
    )
    text = json.dumps(report.to_dict(), allow_nan=False)
    back = DriftReport.from_dict(json.loads(text))
    assert back == report
    assert back.reference.description == "train v3"
    assert back.find_column("score") == report.predictions[0]
    with pytest.raises(InvalidInput, match="missing the field 'columns'"):
        DriftReport.from_dict({k: v for k, v in report.to_dict().items() if k != "columns"})
