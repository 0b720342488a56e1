"""Bandit policies: valid allocations, probability of best, UCB1's index, convergence.

Monte Carlo checks use binomial tolerances: a Thompson weight estimated from ``draws`` joint draws
is (ties having probability 0) a Binomial(draws, p) count divided by ``draws``, so it is checked
against ``scipy.stats.binom.interval(1 - 1e-6, draws, p)``; each such check fails with
probability 1e-6 when the policy is right.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import integrate, special, stats

from shipyard.core.bandits import (
    UCB1,
    ArmSummary,
    BanditPolicy,
    EpsilonGreedy,
    ThompsonBernoulli,
    ThompsonGaussian,
)
from shipyard.errors import InvalidInput

POLICIES: list[Callable[[float], BanditPolicy]] = [
    lambda floor: ThompsonBernoulli(floor=floor, draws=2_000, seed=1),
    lambda floor: ThompsonGaussian(floor=floor, draws=2_000, seed=1),
    lambda floor: UCB1(floor=floor),
    lambda floor: EpsilonGreedy(epsilon=0.1, floor=floor),
]
POLICY_IDS = ["thompson-bernoulli", "thompson-gaussian", "ucb1", "epsilon-greedy"]


def in_interval(estimate: float, p: float, draws: int) -> bool:
    low, high = stats.binom.interval(1 - 1e-6, draws, p)
    return bool(low / draws <= estimate <= high / draws)


@st.composite
def binary_arms(draw: st.DrawFn, min_arms: int = 1) -> list[ArmSummary]:
    arms = []
    for _ in range(draw(st.integers(min_arms, 6))):
        n = draw(st.integers(0, 2_000))
        successes = draw(st.integers(0, n))
        arms.append(ArmSummary(n, successes, successes))
    return arms


# ------------------------------------------------------------------ the contract
@pytest.mark.parametrize("make", POLICIES, ids=POLICY_IDS)
@settings(deadline=None, max_examples=40)
@given(arms=binary_arms(), floor_share=st.floats(0.0, 1.0))
def test_allocations_are_probability_vectors_honouring_the_floor(
    make: Callable[[float], BanditPolicy], arms: list[ArmSummary], floor_share: float
) -> None:
    floor = floor_share / len(arms)  # any floor with floor × k <= 1
    weights = make(floor).allocate(arms)
    assert weights.shape == (len(arms),)
    assert np.all(np.isfinite(weights))
    assert np.all(weights >= floor - 1e-12)
    assert math.isclose(weights.sum(), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("make", POLICIES, ids=POLICY_IDS)
def test_a_floor_too_large_for_the_arms_is_rejected(make: Callable[[float], BanditPolicy]) -> None:
    arms = [ArmSummary(10, 3, 3)] * 4
    assert np.allclose(make(0.25).allocate(arms), 0.25)  # floor × k == 1: all at the floor
    with pytest.raises(InvalidInput, match=re.escape("floor=0.3 with 4 arms")) as caught:
        make(0.3).allocate(arms)
    assert caught.value.field == "floor"
    with pytest.raises(InvalidInput) as caught:
        make(-0.1)
    assert caught.value.field == "floor"


@pytest.mark.parametrize("make", POLICIES, ids=POLICY_IDS)
def test_no_arms_is_rejected(make: Callable[[float], BanditPolicy]) -> None:
    with pytest.raises(InvalidInput, match="at least one arm"):
        make(0.0).allocate([])


@pytest.mark.parametrize("make", POLICIES, ids=POLICY_IDS)
def test_allocation_is_deterministic(make: Callable[[float], BanditPolicy]) -> None:
    arms = [ArmSummary(50, 5, 5), ArmSummary(60, 9, 9), ArmSummary(0)]
    assert np.array_equal(make(0.05).allocate(arms), make(0.05).allocate(list(arms)))


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(ThompsonBernoulli, id="bernoulli"),
        pytest.param(ThompsonGaussian, id="gaussian"),
    ],
)
def test_thompson_depends_on_the_seed_only(policy: Callable[..., BanditPolicy]) -> None:
    arms = [ArmSummary(40, 10, 10), ArmSummary(40, 12, 12)]
    first = policy(seed=3).allocate(arms)
    assert np.array_equal(first, policy(seed=3).allocate(arms))
    assert not np.array_equal(first, policy(seed=4).allocate(arms))
    streamed = policy(seed=np.random.default_rng(3))
    assert np.array_equal(first, streamed.allocate(arms))  # the same stream as seed=3 ...
    assert not np.array_equal(first, streamed.allocate(arms))  # ... which then moves on


def test_the_floor_raises_small_arms_and_keeps_the_ratios_of_the_others() -> None:
    arms = [ArmSummary(200, 20, 20), ArmSummary(200, 30, 30), ArmSummary(200, 34, 34)]
    free = ThompsonBernoulli(seed=5).allocate(arms)
    floored = ThompsonBernoulli(seed=5, floor=0.1).allocate(arms)  # the same Monte Carlo draws
    assert free[0] < 0.1
    assert floored[0] == 0.1
    assert floored[1] / floored[2] == pytest.approx(free[1] / free[2], rel=1e-12)
    assert floored[1:].sum() == pytest.approx(0.9, abs=1e-12)
    # epsilon-greedy without epsilon: everything to the best mean, then the floor
    assert np.allclose(EpsilonGreedy(epsilon=0.0, floor=0.1).allocate(arms), [0.1, 0.1, 0.8])


# ------------------------------------------------------------------ Thompson, Beta-Bernoulli
def beta_prob_b_beats_a(alpha_a: int, beta_a: int, alpha_b: int, beta_b: int) -> float:
    """P(X_B > X_A) for X ~ Beta, the closed form for integer alpha_B (Evan Miller, 2015)."""
    return sum(
        math.exp(
            special.betaln(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - special.betaln(1 + i, beta_b)
            - special.betaln(alpha_a, beta_a)
        )
        for i in range(alpha_b)
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param((10, 90), (14, 86), id="small"),
        pytest.param((100, 900), (110, 890), id="medium"),
        pytest.param((1, 1), (3, 1), id="tiny"),
        pytest.param((0, 0), (0, 0), id="no-data"),
    ],
)
def test_thompson_probability_of_best_matches_the_closed_form(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    (s_a, f_a), (s_b, f_b) = a, b
    exact = beta_prob_b_beats_a(1 + s_a, 1 + f_a, 1 + s_b, 1 + f_b)
    numeric, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, 1 + s_b, 1 + f_b) * stats.beta.cdf(x, 1 + s_a, 1 + f_a),
        0,
        1,
        epsabs=1e-12,
        points=[s_a / max(1, s_a + f_a), s_b / max(1, s_b + f_b)],
    )
    assert exact == pytest.approx(numeric, abs=1e-8)
    draws = 200_000
    policy = ThompsonBernoulli(draws=draws, seed=11)
    weights = policy.allocate([ArmSummary(s_a + f_a, s_a, s_a), ArmSummary(s_b + f_b, s_b, s_b)])
    assert in_interval(weights[1], exact, draws)


def test_thompson_bernoulli_rejects_impossible_counts() -> None:
    with pytest.raises(InvalidInput, match="successes") as caught:
        ThompsonBernoulli().allocate([ArmSummary(5, 6, 6)])
    assert caught.value.field == "sum"
    with pytest.raises(InvalidInput, match="successes"):
        ThompsonBernoulli().allocate([ArmSummary(5, 2.5, 2.5)])


# ------------------------------------------------------------------ Thompson, Gaussian
def gaussian_summary(rewards: NDArray[np.float64]) -> ArmSummary:
    return ArmSummary(len(rewards), float(rewards.sum()), float((rewards**2).sum()))


def posterior_t(arm: ArmSummary, pooled: Sequence[ArmSummary]) -> stats.rv_continuous:
    """The documented Normal-inverse-gamma posterior of the mean, with prior_n = 1."""
    total = sum(a.n for a in pooled)
    m = sum(a.sum for a in pooled) / total
    v = (sum(a.sum_sq for a in pooled) - total * m**2) / (total - 1)
    kappa0, alpha0 = 1.0, 0.5
    beta0 = alpha0 * v
    mean = arm.sum / arm.n
    ss = arm.sum_sq - arm.sum**2 / arm.n
    kappa = kappa0 + arm.n
    mu = (kappa0 * m + arm.n * mean) / kappa
    alpha = alpha0 + arm.n / 2
    beta = beta0 + ss / 2 + kappa0 * arm.n * (mean - m) ** 2 / (2 * kappa)
    return stats.t(df=2 * alpha, loc=mu, scale=math.sqrt(beta / (alpha * kappa)))


@pytest.mark.parametrize("n", [pytest.param(3, id="n3"), pytest.param(30, id="n30")])
def test_thompson_gaussian_matches_its_posterior(n: int) -> None:
    rng = np.random.default_rng(2)
    arms = [gaussian_summary(rng.normal(1.0, 2.0, n)), gaussian_summary(rng.normal(1.5, 2.0, n))]
    first, second = (posterior_t(arm, arms) for arm in arms)
    exact, _ = integrate.quad(lambda x: second.pdf(x) * first.cdf(x), -np.inf, np.inf)
    draws = 200_000
    weights = ThompsonGaussian(draws=draws, seed=8).allocate(arms)
    assert in_interval(weights[1], exact, draws)


def test_thompson_gaussian_is_the_normal_approximation_for_large_samples() -> None:
    # n = 10,000 per arm: the posterior of each mean is Normal(x̄, s²/n) up to ~1e-4 in the
    # probability (shrinkage by 1 pseudo-observation, t with 10,001 df); allow 1e-3 on top.
    rng = np.random.default_rng(4)
    samples = [rng.normal(10.0, 3.0, 10_000), rng.normal(10.08, 3.0, 10_000)]
    arms = [gaussian_summary(s) for s in samples]
    se = math.sqrt(sum(s.var(ddof=1) / len(s) for s in samples))
    expected = stats.norm.cdf((samples[1].mean() - samples[0].mean()) / se)
    draws = 200_000
    weight = ThompsonGaussian(draws=draws, seed=6).allocate(arms)[1]
    low, high = stats.binom.interval(1 - 1e-6, draws, expected)
    assert low / draws - 1e-3 <= weight <= high / draws + 1e-3


def test_thompson_gaussian_without_information_is_even() -> None:
    policy = ThompsonGaussian(floor=0.0)
    assert np.allclose(policy.allocate([ArmSummary(0), ArmSummary(0)]), 0.5)
    same = ArmSummary(5, 5 * 0.1, 5 * 0.01)  # five rewards of 0.1 each
    assert np.allclose(policy.allocate([same, same, ArmSummary(0)]), 1 / 3)


def test_thompson_gaussian_explores_an_arm_without_data() -> None:
    rng = np.random.default_rng(9)
    arms = [gaussian_summary(rng.normal(0.0, 1.0, 200)), ArmSummary(0)]
    weights = ThompsonGaussian(seed=1).allocate(arms)
    assert 0.2 < weights[1] < 0.8  # drawn widely around the pooled mean


# ------------------------------------------------------------------ UCB1
@settings(deadline=None)
@given(arms=binary_arms(min_arms=2), floor_share=st.floats(0.0, 0.9))
def test_ucb1_puts_the_weight_on_the_highest_index(
    arms: list[ArmSummary], floor_share: float
) -> None:
    floor = floor_share / len(arms)
    total = sum(arm.n for arm in arms)
    expected = [
        arm.sum / arm.n + math.sqrt(2 * math.log(total) / arm.n) if arm.n else math.inf
        for arm in arms
    ]
    policy = UCB1(floor=floor)
    assert np.allclose(policy.indices(arms), expected, rtol=1e-12)
    weights = policy.allocate(arms)
    best = [i for i, index in enumerate(expected) if index == max(expected)]
    rest = 1 - floor * (len(arms) - len(best))
    for i in range(len(arms)):
        share = rest / len(best) if i in best else floor
        assert weights[i] == pytest.approx(share, abs=1e-12)


def test_ucb1_scales_its_bonus_with_the_reward_range() -> None:
    arms = [ArmSummary(100, 50.0, 30.0), ArmSummary(25, 10.0, 5.0)]
    # index = mean + range × sqrt(2 ln 125 / n): 0.5 + 0.311 vs 0.4 + 0.622 with range 1
    assert UCB1(reward_range=1.0).allocate(arms).tolist() == [0.0, 1.0]
    assert UCB1(reward_range=0.1).allocate(arms).tolist() == [1.0, 0.0]


# ------------------------------------------------------------------ convergence
def simulate(
    policy: BanditPolicy, reward: Callable[[np.random.Generator, int, int], NDArray[np.float64]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """20,000 requests in batches of 500, routed by the allocation recomputed after each batch."""
    rng = np.random.default_rng(0)
    k = 3
    n, sums, sums_sq = np.zeros(k), np.zeros(k), np.zeros(k)
    weights = np.full(k, 1 / k)
    for _ in range(40):
        pulls = rng.multinomial(500, weights)
        for arm in range(k):
            rewards = reward(rng, arm, int(pulls[arm]))
            n[arm] += pulls[arm]
            sums[arm] += rewards.sum()
            sums_sq[arm] += (rewards**2).sum()
        summaries = [ArmSummary(int(n[i]), float(sums[i]), float(sums_sq[i])) for i in range(k)]
        weights = policy.allocate(summaries)
    return weights, n / n.sum()


def bernoulli(rng: np.random.Generator, arm: int, size: int) -> NDArray[np.float64]:
    return rng.binomial(1, [0.3, 0.5, 0.7][arm], size).astype(np.float64)


def gaussian(rng: np.random.Generator, arm: int, size: int) -> NDArray[np.float64]:
    return rng.normal([1.0, 1.2, 1.5][arm], 1.0, size)


@pytest.mark.parametrize(
    ("policy", "reward", "min_share"),
    [
        pytest.param(ThompsonBernoulli(floor=0.01), bernoulli, 0.9, id="thompson-bernoulli"),
        pytest.param(ThompsonGaussian(floor=0.01), gaussian, 0.9, id="thompson-gaussian"),
        pytest.param(UCB1(floor=0.01), bernoulli, 0.6, id="ucb1"),
        pytest.param(EpsilonGreedy(epsilon=0.1, floor=0.01), bernoulli, 0.85, id="eps-greedy"),
    ],
)
def test_policies_converge_to_the_best_arm(
    policy: BanditPolicy,
    reward: Callable[[np.random.Generator, int, int], NDArray[np.float64]],
    min_share: float,
) -> None:
    weights, pulls = simulate(policy, reward)
    assert int(np.argmax(weights)) == 2
    assert pulls[2] > min_share  # uniform routing would give it 1/3


# ------------------------------------------------------------------ summaries
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"n": -1}, "n", id="negative-n"),
        pytest.param({"n": 2.0}, "n", id="float-n"),
        pytest.param({"n": True}, "n", id="bool-n"),
        pytest.param({"n": 2, "sum": math.nan}, "sum", id="nan-sum"),
        pytest.param({"n": 2, "sum": 1.0, "sum_sq": -1.0}, "sum_sq", id="negative-sum-sq"),
        pytest.param({"n": 0, "sum": 1.0}, "sum", id="sum-without-rewards"),
    ],
)
def test_invalid_summaries_are_rejected_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        ArmSummary(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(lambda: ThompsonBernoulli(prior_alpha=0.0), "prior_alpha", id="alpha"),
        pytest.param(lambda: ThompsonBernoulli(draws=0), "draws", id="draws"),
        pytest.param(lambda: ThompsonGaussian(prior_n=-1.0), "prior_n", id="prior-n"),
        pytest.param(lambda: UCB1(reward_range=math.inf), "reward_range", id="range"),
        pytest.param(lambda: EpsilonGreedy(epsilon=1.5), "epsilon", id="epsilon"),
    ],
)
def test_invalid_hyper_parameters_are_rejected_naming_them(
    make: Callable[[], object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        make()
    assert caught.value.field == field
