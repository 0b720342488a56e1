"""Bandit policies: an allocation (a weight per arm) from per-arm outcome summaries.

Every policy has the same verbs: hyper-parameters in ``__init__``, and ``allocate(arms)`` that
returns a probability vector, one weight per arm, from :class:`ArmSummary` values (``n``, sum and
sum of squares of the rewards, as the event log aggregates them). The server recomputes the
allocation on an interval and routes by it (:class:`shipyard.core.assignment.BanditAllocation`),
so each policy's output is a distribution over arms, not a single pull:

- :class:`ThompsonBernoulli` — binary rewards, Beta(``prior_alpha`` + successes, ``prior_beta`` +
  failures) posteriors; the weight of an arm is the posterior probability that it is the best,
  estimated by Monte Carlo with ``draws`` joint draws (standard error ≤ 0.5 / √draws, 0.005 at the
  default 10,000);
- :class:`ThompsonGaussian` — continuous rewards, unknown mean and variance: a conjugate
  Normal-inverse-gamma posterior per arm whose prior is centred on the pooled data (see the class);
  the weight is again the Monte Carlo probability of being best;
- :class:`UCB1` — the arms with the highest index ``mean + reward_range × √(2 ln N / n)`` share the
  weight (an arm without data has an infinite index);
- :class:`EpsilonGreedy` — ``epsilon`` spread evenly, the rest to the arms with the highest mean
  (an arm without data counts as highest).

Ties share their weight evenly. Each policy then applies its exploration ``floor``: arms below it
are raised to it and the others are scaled down in proportion, so every arm gets at least
``floor``, the weights still sum to 1, and arms above the floor keep their ratios (``floor × k``
must be ≤ 1).

Randomness comes from ``seed`` only. With an integer seed (the default, 0) ``allocate`` starts a
fresh generator from it, so the allocation is a pure function of the summaries and every replica
that computes it from the same outcomes gets the same weights; a ``numpy.random.Generator`` is
used as it is and advances with each call, for simulations that want independent draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from shipyard.errors import InvalidInput

Weights = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """Outcomes of one arm: ``n`` rewards, their ``sum`` and their sum of squares ``sum_sq``."""

    n: int
    sum: float = 0.0
    sum_sq: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise InvalidInput(f"n must be an integer >= 0, got {self.n!r}", field="n")
        if not math.isfinite(self.sum):
            raise InvalidInput(f"sum must be finite, got {self.sum!r}", field="sum")
        if not (math.isfinite(self.sum_sq) and self.sum_sq >= 0.0):
            raise InvalidInput(
                f"sum_sq must be finite and >= 0, got {self.sum_sq!r}", field="sum_sq"
            )
        if self.n == 0 and (self.sum != 0.0 or self.sum_sq != 0.0):
            raise InvalidInput(
                f"an arm with n=0 has sum=0 and sum_sq=0, got {self.sum} and {self.sum_sq}",
                field="sum",
            )

    @property
    def mean(self) -> float:
        """The mean reward (NaN without rewards)."""
        return self.sum / self.n if self.n else math.nan


class BanditPolicy(Protocol):
    """What every policy offers: an exploration floor and ``allocate``."""

    floor: float

    def allocate(self, arms: Sequence[ArmSummary]) -> Weights:
        """One weight per arm, each >= ``floor``, summing to 1."""
        ...


class ThompsonBernoulli:
    """Thompson sampling for binary rewards (each arm's ``sum`` is its number of successes)."""

    def __init__(
        self,
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        draws: int = 10_000,
        floor: float = 0.0,
        seed: int | np.random.Generator = 0,
    ) -> None:
        _check_positive(prior_alpha=prior_alpha, prior_beta=prior_beta)
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.draws = _check_draws(draws)
        self.floor = _check_floor(floor)
        self.seed = seed

    def allocate(self, arms: Sequence[ArmSummary]) -> Weights:
        n, successes, _ = _arrays(arms, self.floor)
        if np.any((successes < 0) | (successes > n) | (successes != np.round(successes))):
            raise InvalidInput(
                f"binary rewards need a whole number of successes in [0, n] per arm, got sums "
                f"{successes.tolist()} for n {n.tolist()}",
                field="sum",
            )
        rng = np.random.default_rng(self.seed)
        samples = rng.beta(
            self.prior_alpha + successes, self.prior_beta + n - successes, size=(self.draws, len(n))
        )
        return _with_floor(_probability_best(samples), self.floor)


class ThompsonGaussian:
    """Thompson sampling for continuous rewards with unknown mean and variance.

    Each arm's mean has a Normal-inverse-gamma posterior whose prior is worth ``prior_n``
    observations of the pooled data (all arms together, mean ``m``, variance ``v`` with n - 1):
    ``κ0 = prior_n``, ``μ0 = m``, ``α0 = prior_n / 2``, ``β0 = α0 × v``. For an arm with ``n``
    rewards of mean ``x̄`` and sum of squared deviations ``SS``::

        κ = κ0 + n    μ = (κ0 μ0 + n x̄) / κ    α = α0 + n / 2
        β = β0 + SS / 2 + κ0 n (x̄ − μ0)² / (2κ)

    and its mean is Student t with ``2α`` degrees of freedom, location ``μ`` and scale
    ``√(β / (ακ))`` — for large ``n`` about Normal(x̄, s² / n). The prior is scale-free (it moves
    with the units of the rewards) and lets an arm without data be drawn widely around the pooled
    mean. With fewer than two rewards in all, or all rewards equal, no arm can be told apart and
    the allocation is even. ``SS`` comes from ``sum_sq − sum² / n`` (clipped at 0), which loses
    precision when the mean is huge next to the spread: centre such rewards first.
    """

    def __init__(
        self,
        *,
        prior_n: float = 1.0,
        draws: int = 10_000,
        floor: float = 0.0,
        seed: int | np.random.Generator = 0,
    ) -> None:
        _check_positive(prior_n=prior_n)
        self.prior_n = prior_n
        self.draws = _check_draws(draws)
        self.floor = _check_floor(floor)
        self.seed = seed

    def allocate(self, arms: Sequence[ArmSummary]) -> Weights:
        n, sums, sums_sq = _arrays(arms, self.floor)
        total = n.sum()
        pooled_mean = sums.sum() / total if total else 0.0
        pooled_var = (
            max(0.0, (sums_sq.sum() - total * pooled_mean**2) / (total - 1)) if total > 1 else 0.0
        )
        if pooled_var == 0.0:
            return _with_floor(np.full(len(n), 1.0 / len(n)), self.floor)
        kappa0, alpha0 = self.prior_n, self.prior_n / 2
        beta0 = alpha0 * pooled_var
        safe_n = np.maximum(n, 1.0)
        means = np.where(n > 0, sums / safe_n, pooled_mean)
        squares = np.maximum(0.0, sums_sq - sums * means)
        kappa = kappa0 + n
        mu = (kappa0 * pooled_mean + sums) / kappa
        alpha = alpha0 + n / 2
        beta = beta0 + squares / 2 + kappa0 * n * (means - pooled_mean) ** 2 / (2 * kappa)
        scale = np.sqrt(beta / (alpha * kappa))
        rng = np.random.default_rng(self.seed)
        samples = mu + scale * rng.standard_t(2 * alpha, size=(self.draws, len(n)))
        return _with_floor(_probability_best(samples), self.floor)


class UCB1:
    """UCB1: the weight goes to the arms with the highest upper confidence bound.

    ``reward_range`` is the width of the reward interval (1 for rewards in [0, 1]); the index of an
    arm is ``mean + reward_range × √(2 ln N / n)`` with ``N`` the rewards of all arms. Recomputed on
    an interval, the whole batch goes to one arm (plus the floor), so keep the interval short.
    """

    def __init__(self, *, reward_range: float = 1.0, floor: float = 0.0) -> None:
        _check_positive(reward_range=reward_range)
        self.reward_range = reward_range
        self.floor = _check_floor(floor)

    def indices(self, arms: Sequence[ArmSummary]) -> Weights:
        """The UCB1 index of each arm (``inf`` for an arm without rewards)."""
        n, sums, _ = _arrays(arms, self.floor)
        total = n.sum()
        safe_n = np.maximum(n, 1.0)
        bonus = self.reward_range * np.sqrt(2.0 * math.log(max(total, 1.0)) / safe_n)
        return np.where(n > 0, sums / safe_n + bonus, np.inf)

    def allocate(self, arms: Sequence[ArmSummary]) -> Weights:
        return _with_floor(_share_best(self.indices(arms)), self.floor)


class EpsilonGreedy:
    """Epsilon-greedy: ``epsilon`` of the traffic spread evenly, the rest to the best mean."""

    def __init__(self, *, epsilon: float = 0.1, floor: float = 0.0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidInput(f"epsilon must be in [0, 1], got {epsilon!r}", field="epsilon")
        self.epsilon = epsilon
        self.floor = _check_floor(floor)

    def allocate(self, arms: Sequence[ArmSummary]) -> Weights:
        n, sums, _ = _arrays(arms, self.floor)
        means = np.where(n > 0, sums / np.maximum(n, 1.0), np.inf)
        greedy = (1.0 - self.epsilon) * _share_best(means) + self.epsilon / len(n)
        return _with_floor(greedy, self.floor)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0.0):
            raise InvalidInput(f"{name} must be a finite number > 0, got {value!r}", field=name)


def _check_draws(draws: int) -> int:
    if draws < 1:
        raise InvalidInput(f"draws must be >= 1, got {draws}", field="draws")
    return draws


def _check_floor(floor: float) -> float:
    if not 0.0 <= floor <= 1.0:
        raise InvalidInput(f"floor must be in [0, 1], got {floor!r}", field="floor")
    return floor


def _arrays(arms: Sequence[ArmSummary], floor: float) -> tuple[Weights, Weights, Weights]:
    if not arms:
        raise InvalidInput("a bandit needs at least one arm, got none", field="arms")
    if floor * len(arms) > 1.0 + 1e-12:
        raise InvalidInput(
            f"floor × arms must be <= 1, got floor={floor} with {len(arms)} arms", field="floor"
        )
    return (
        np.array([arm.n for arm in arms], dtype=np.float64),
        np.array([arm.sum for arm in arms], dtype=np.float64),
        np.array([arm.sum_sq for arm in arms], dtype=np.float64),
    )


def _probability_best(samples: Weights) -> Weights:
    """Share of rows (joint draws) in which each column is the largest; ties split evenly."""
    wins = samples == samples.max(axis=1, keepdims=True)
    shares: Weights = (wins / wins.sum(axis=1, keepdims=True)).mean(axis=0)
    return shares


def _share_best(scores: Weights) -> Weights:
    best = scores == scores.max()
    shares: Weights = best / best.sum()
    return shares


def _with_floor(weights: Weights, floor: float) -> Weights:
    """Raise arms below ``floor`` to it and scale the rest down in proportion (sum stays 1)."""
    raised = np.zeros(len(weights), dtype=bool)
    while True:
        free = ~raised
        free_total = weights[free].sum()
        if free_total <= 0.0:
            return np.full(len(weights), 1.0 / len(weights))
        scale = (1.0 - floor * raised.sum()) / free_total
        newly = free & (weights * scale < floor)
        if not newly.any():
            result: Weights = np.where(raised, floor, weights * scale)
            return result
        raised |= newly
