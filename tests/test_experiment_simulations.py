"""Seeded simulations of the experiment statistics: error rates, coverage, CUPED, power.

Every simulation runs thousands of experiments at once through the vectorised functions (each
summary holds one element per experiment). Experiments are drawn from their sufficient
statistics, which is exact: a binary arm's successes are Binomial(n, p); a normal arm's
``Σy ~ N(nμ, nσ²)`` and, independently, ``Σ(y − ȳ)² ~ σ²·χ²(n − 1)``, so
``Σy² = Σ(y − ȳ)² + (Σy)²/n``.

Tolerances come from the binomial: an observed count of ``S`` experiments must lie in the central
99% interval of Binomial(S, rate) (two-sided claims) or below its 99% quantile (``≤ rate``
claims), computed by :func:`binomial_interval`; the seeds are fixed, so the outcome is
deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from shipyard.core.confidence_sequences import running_min_p_value, sequential_test
from shipyard.core.experiment_stats import (
    CovariateSummary,
    FloatArray,
    MetricSummary,
    cuped,
    proportions_ztest,
    welch_ttest,
)
from shipyard.core.sample_size import plan_mean, plan_proportion

ALPHA = 0.05


def binomial_interval(trials: int, rate: float, level: float = 0.99) -> tuple[float, float]:
    """The central ``level`` interval of Binomial(trials, rate), as counts."""
    tail = (1 - level) / 2
    return float(stats.binom.ppf(tail, trials, rate)), float(stats.binom.isf(tail, trials, rate))


def binomial_upper(trials: int, rate: float, level: float = 0.99) -> float:
    """The ``level`` quantile of Binomial(trials, rate): a count above it says "more than rate"."""
    return float(stats.binom.isf(1 - level, trials, rate))


def normal_arm(
    rng: np.random.Generator, n: float, mean: float, sd: float, shape: tuple[int, ...]
) -> MetricSummary[FloatArray]:
    """Summaries of ``n`` normal values per experiment, drawn exactly from their sufficient
    statistics."""
    total = rng.normal(n * mean, sd * math.sqrt(n), shape)
    within = sd**2 * rng.chisquare(n - 1, shape)
    return MetricSummary(np.full(shape, float(n)), total, within + total**2 / n)


def binary_arm(
    rng: np.random.Generator, n: float, p: float, shape: tuple[int, ...]
) -> MetricSummary[FloatArray]:
    return MetricSummary.proportion(np.full(shape, float(n)), rng.binomial(int(n), p, shape) * 1.0)


def cumulative(batches: list[MetricSummary[FloatArray]]) -> MetricSummary[FloatArray]:
    """Summaries after each look from per-batch summaries (stacked along the last axis)."""

    def stack(name: str) -> FloatArray:
        return np.cumsum(np.stack([getattr(b, name) for b in batches], axis=-1), axis=-1)

    return MetricSummary(stack("n"), stack("sum"), stack("sum_squares"), batches[0].kind)


# ---------------------------------------------------------------- A/A false positives
def aa_proportions(rng: np.random.Generator, sims: int) -> tuple[MetricSummary[FloatArray], ...]:
    return binary_arm(rng, 2000, 0.1, (sims,)), binary_arm(rng, 2600, 0.1, (sims,))


def aa_means(rng: np.random.Generator, sims: int) -> tuple[MetricSummary[FloatArray], ...]:
    # unequal sizes and spreads: the case Welch exists for
    return normal_arm(rng, 40, 10.0, 1.0, (sims,)), normal_arm(rng, 15, 10.0, 3.0, (sims,))


@pytest.mark.parametrize(
    ("data", "test"),
    [
        pytest.param(aa_proportions, lambda a, b: proportions_ztest(a, b), id="z-test"),
        pytest.param(
            aa_means, lambda a, b: welch_ttest(a, b, difference="absolute"), id="welch-absolute"
        ),
        pytest.param(aa_proportions, lambda a, b: welch_ttest(a, b), id="welch-relative-rate"),
        pytest.param(aa_means, lambda a, b: welch_ttest(a, b), id="welch-relative-mean"),
    ],
)
def test_fixed_horizon_false_positive_rate_is_alpha(data: Any, test: Any) -> None:
    sims = 20_000
    control, treatment = data(np.random.default_rng(11), sims)
    false_positives = int((test(control, treatment).p_value < ALPHA).sum())
    low, high = binomial_interval(sims, ALPHA)
    assert low <= false_positives <= high, (false_positives, low, high)


# ---------------------------------------------------------------- peeking
def peeking(kind: str, sims: int, looks: int, seed: int) -> tuple[MetricSummary[FloatArray], ...]:
    rng = np.random.default_rng(seed)
    if kind == "proportion":
        arms = [[binary_arm(rng, 250, 0.1, (sims,)) for _ in range(looks)] for _ in range(2)]
    else:
        arms = [[normal_arm(rng, 250, 5.0, 2.0, (sims,)) for _ in range(looks)] for _ in range(2)]
    return cumulative(arms[0]), cumulative(arms[1])


@pytest.mark.parametrize("kind", ["proportion", "mean"])
@pytest.mark.parametrize("difference", ["absolute", "relative"])
def test_sequential_stays_within_alpha_over_20_looks_while_naive_peeking_does_not(
    kind: str, difference: Any
) -> None:
    sims, looks = 4000, 20
    control, treatment = peeking(kind, sims, looks, seed=12)
    planned_total = 2 * 250 * looks
    sequential = sequential_test(control, treatment, difference=difference, tuning_n=planned_total)
    naive = welch_ttest(control, treatment, difference=difference)
    sequential_hits = int((running_min_p_value(sequential.p_value)[:, -1] <= ALPHA).sum())
    naive_hits = int((naive.p_value < ALPHA).any(axis=1).sum())
    last_look_hits = int((naive.p_value[:, -1] < ALPHA).sum())
    ceiling = binomial_upper(sims, ALPHA)
    assert sequential_hits <= ceiling, (sequential_hits, ceiling)
    assert naive_hits > ceiling, (naive_hits, ceiling)  # ~25% of A/A experiments
    low, high = binomial_interval(sims, ALPHA)  # one look at the end is fine
    assert low <= last_look_hits <= high


# ---------------------------------------------------------------- coverage
@pytest.mark.parametrize("kind", ["proportion", "mean"])
def test_fixed_horizon_intervals_cover_95_percent(kind: str) -> None:
    sims = 10_000
    rng = np.random.default_rng(13)
    if kind == "proportion":
        control, treatment = (
            binary_arm(rng, 5000, 0.10, (sims,)),
            binary_arm(rng, 4000, 0.11, (sims,)),
        )
        true_absolute, true_relative = 0.01, 0.1
    else:
        control, treatment = (
            normal_arm(rng, 60, 20.0, 4.0, (sims,)),
            normal_arm(rng, 90, 21.0, 6.0, (sims,)),
        )
        true_absolute, true_relative = 1.0, 0.05
    low, high = binomial_interval(sims, 1 - ALPHA)
    for difference, truth in (("absolute", true_absolute), ("relative", true_relative)):
        result = welch_ttest(control, treatment, difference=difference)
        covered = int(((result.ci_low <= truth) & (truth <= result.ci_high)).sum())
        assert low <= covered <= high, (difference, covered, low, high)


@pytest.mark.parametrize("difference", ["absolute", "relative"])
def test_confidence_sequences_cover_at_every_look(difference: Any) -> None:
    sims, looks = 4000, 20
    rng = np.random.default_rng(14)
    control = cumulative([binary_arm(rng, 200, 0.10, (sims,)) for _ in range(looks)])
    treatment = cumulative([binary_arm(rng, 200, 0.12, (sims,)) for _ in range(looks)])
    truth = 0.02 if difference == "absolute" else 0.2
    result = sequential_test(control, treatment, difference=difference, tuning_n=8000)
    always = int(((result.ci_low <= truth) & (truth <= result.ci_high)).all(axis=1).sum())
    # at least 1 − alpha of experiments are covered at all 20 looks at once (lower 99% bound)
    assert always >= stats.binom.ppf(0.01, sims, 1 - ALPHA), always
    # while the fixed-horizon interval misses at some look far more often
    fixed = welch_ttest(control, treatment, difference=difference)
    fixed_always = ((fixed.ci_low <= truth) & (truth <= fixed.ci_high)).all(axis=1).sum()
    assert fixed_always < stats.binom.ppf(0.01, sims, 1 - ALPHA)


# ---------------------------------------------------------------- CUPED
def test_cuped_shrinks_the_variance_by_one_minus_rho_squared() -> None:
    sims, n, rho = 2000, 400, 0.6
    rng = np.random.default_rng(15)
    arms = []
    for effect in (0.0, 0.3):
        x = rng.normal(0.0, 1.0, (sims, n))
        y = 5.0 + effect + rho * x + math.sqrt(1 - rho**2) * rng.normal(0.0, 1.0, (sims, n))
        counts = np.full(sims, float(n))
        arms.append(
            (
                MetricSummary(counts, y.sum(axis=1), (y * y).sum(axis=1)),
                CovariateSummary(counts, x.sum(axis=1), (x * x).sum(axis=1), (x * y).sum(axis=1)),
            )
        )
    (control, control_x), (treatment, treatment_x) = arms
    adjusted = cuped(control, control_x, treatment, treatment_x)
    raw = welch_ttest(control, treatment, difference="absolute")
    reduced = welch_ttest(adjusted.control, adjusted.treatment, difference="absolute")

    # 1. the estimated variance of the lift shrinks by 1 − ρ² in each experiment: the mean ratio
    # within 5 standard errors (of the ratios' mean) plus 1/n for the fitted θ
    ratio = reduced.se**2 / raw.se**2
    tolerance = 5 * ratio.std() / math.sqrt(sims) + 1 / n
    assert abs(ratio.mean() - (1 - rho**2)) <= tolerance, (ratio.mean(), tolerance)
    assert abs(adjusted.correlation.mean() - rho) <= 0.01

    # 2. the lift's actual spread across experiments is sqrt(1 − ρ²) of the raw one, and the
    # estimate stays unbiased: the sample variance of S estimates within the χ²(S − 1) 99% band
    true_variance = (1 - rho**2) * 2 / n
    band = stats.chi2.ppf([0.005, 0.995], sims - 1) / (sims - 1)
    spread = reduced.estimate.var(ddof=1) / true_variance
    assert band[0] <= spread <= band[1] * (1 + 2 / n), spread
    assert abs(reduced.estimate.mean() - 0.3) <= 5 * math.sqrt(true_variance / sims)
    assert raw.estimate.var(ddof=1) > 1.4 * reduced.estimate.var(ddof=1)


# ---------------------------------------------------------------- power
@pytest.mark.parametrize(
    ("make_plan", "difference"),
    [
        pytest.param(lambda: plan_proportion(0.10, 0.10), "relative", id="rate-up"),
        pytest.param(lambda: plan_proportion(0.10, -0.10), "relative", id="rate-down"),
        pytest.param(lambda: plan_proportion(0.02, 0.20), "relative", id="small-rate-up"),
        pytest.param(
            lambda: plan_proportion(0.10, 0.10, difference="absolute"),
            "absolute",
            id="rate-absolute",
        ),
        pytest.param(lambda: plan_mean(20.0, 8.0, 0.05), "relative", id="mean-up"),
    ],
)
def test_planned_sample_size_achieves_the_planned_power(make_plan: Any, difference: Any) -> None:
    plan = make_plan()
    sims, n = 20_000, plan.n_per_variant
    rng = np.random.default_rng(16)
    if plan.kind == "mean":
        sd = math.sqrt(plan.control_variance)
        control = normal_arm(rng, n, plan.control_mean, sd, (sims,))
        treatment = normal_arm(rng, n, plan.treatment_mean, sd, (sims,))
    else:
        control = binary_arm(rng, n, plan.control_mean, (sims,))
        treatment = binary_arm(rng, n, plan.treatment_mean, (sims,))
    detected = int((welch_ttest(control, treatment, difference=difference).p_value < ALPHA).sum())
    # the plan is a normal approximation (t quantiles, second-order terms aside): allow 0.005 of
    # power on top of the binomial interval
    low, high = binomial_interval(sims, float(plan.power_at(n)))
    assert low - 0.005 * sims <= detected <= high + 0.005 * sims, (detected, low, high)
