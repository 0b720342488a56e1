"""Bayesian experiment analysis: the normal model on the lift (default) and Beta-Binomial.

**Normal model** (:func:`bayesian_test`, GrowthBook's default Bayesian engine). The likelihood of
the lift is normal with the estimate and standard error of
:func:`~shipyard.core.experiment_stats.welch_ttest` (relative lift by the delta method, or
absolute). The prior on the lift is normal, ``N(prior_mean, prior_variance)``, flat by default
(``prior_variance = inf``), so the posterior is ``N(μ, σ²)`` with::

    1/σ² = 1/se² + 1/prior_variance        μ = σ²·(lift/se² + prior_mean/prior_variance)

and with the flat prior ``μ = lift``, ``σ = se``. Then ``chance_to_win = P(lift > 0) = Φ(μ/σ)``,
the expected loss of shipping the treatment ``E[max(−lift, 0)] = σφ(μ/σ) − μΦ(−μ/σ)``, of keeping
the control ``E[max(lift, 0)] = σφ(μ/σ) + μΦ(μ/σ)``, and the credible interval
``μ ± z_{1−alpha/2}·σ``. For a metric where lower is better, the chance to win is
``1 − chance_to_win`` and the two losses swap.

**Beta-Binomial** (:func:`beta_binomial_test`, binary metrics). Each arm's rate has the conjugate
posterior ``Beta(a₀ + successes, b₀ + failures)`` (uniform prior ``a₀ = b₀ = 1`` by default).
``chance_to_win = P(p_t > p_c) = ∫₀¹ F_c(F_t⁻¹(u)) du`` is computed by adaptive quadrature
(``scipy.integrate.quad``) to an absolute error below :data:`BETA_TOLERANCE`; the expected losses
reduce to the same integral, e.g. ``E[max(p_c − p_t, 0)] = m_c·P(p_c⁺ > p_t) − m_t·P(p_c > p_t⁺)``
where ``p⁺ ~ Beta(a + 1, b)`` and ``m`` is a posterior mean. The credible intervals are each
arm's central ``1 − alpha`` posterior interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic

import numpy as np
from scipy import integrate, special, stats

from shipyard.core.experiment_stats import (
    DEFAULT_ALPHA,
    Difference,
    F,
    MetricSummary,
    as_float64,
    builtin_numbers,
    check_alpha,
    check_difference,
    lift,
)
from shipyard.errors import InvalidInput

BETA_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class NormalPrior:
    """A normal prior on the lift; the default, ``variance = inf``, is flat."""

    mean: float = 0.0
    variance: float = math.inf

    def __post_init__(self) -> None:
        if not (self.variance > 0 and math.isfinite(self.mean)):
            raise InvalidInput(
                f"a normal prior needs a finite mean and a variance > 0, got mean {self.mean} "
                f"and variance {self.variance}",
                field="prior",
            )


@dataclass(frozen=True, slots=True)
class BayesianComparison(Generic[F]):
    """The normal model's posterior of the lift: mean ``estimate`` and ``sd``,
    ``chance_to_win = P(lift > 0)``, the expected losses of shipping the treatment
    (``expected_loss``) and of keeping the control (``expected_loss_control``), and the
    ``1 − alpha`` credible interval."""

    difference: Difference
    alpha: float
    prior: NormalPrior
    control_n: F
    treatment_n: F
    control_mean: F
    treatment_mean: F
    estimate: F
    sd: F
    chance_to_win: F
    expected_loss: F
    expected_loss_control: F
    ci_low: F
    ci_high: F

    def __post_init__(self) -> None:
        builtin_numbers(self)


def bayesian_test(
    control: MetricSummary[F],
    treatment: MetricSummary[F],
    *,
    difference: Difference = "relative",
    alpha: float = DEFAULT_ALPHA,
    prior: NormalPrior = NormalPrior(),  # frozen: sharing it is safe
) -> BayesianComparison[F]:
    """The normal model with a normal (default flat) prior on the lift (module docstring)."""
    check_difference(difference)
    check_alpha(alpha)
    n_a, n_b = as_float64(control.n), as_float64(treatment.n)
    mean_a, mean_b = control.mean, treatment.mean
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate, se = lift(
            mean_a, mean_b, control.variance / n_a, treatment.variance / n_b, difference
        )
        precision = 1.0 / se**2 + 1.0 / prior.variance
        variance = 1.0 / precision
        mean = variance * (estimate / se**2 + prior.mean / prior.variance)
        sd = np.sqrt(variance)
        z = mean / sd
        density = stats.norm.pdf(z)
        loss_treatment = sd * density - mean * stats.norm.cdf(-z)
        loss_control = sd * density + mean * stats.norm.cdf(z)
        half = stats.norm.ppf(1.0 - alpha / 2.0) * sd
    return BayesianComparison(
        difference=difference,
        alpha=alpha,
        prior=prior,
        control_n=n_a,
        treatment_n=n_b,
        control_mean=mean_a,
        treatment_mean=mean_b,
        estimate=mean,
        sd=sd,
        chance_to_win=stats.norm.cdf(z),
        expected_loss=loss_treatment,
        expected_loss_control=loss_control,
        ci_low=mean - half,
        ci_high=mean + half,
    )


@dataclass(frozen=True, slots=True)
class BetaPosterior:
    """A Beta(alpha, beta) posterior of a rate."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def interval(self, level: float) -> tuple[float, float]:
        """The central credible interval of probability ``level``."""
        tail = (1.0 - level) / 2.0
        low, high = special.betaincinv(self.alpha, self.beta, [tail, 1.0 - tail])
        return float(low), float(high)


@dataclass(frozen=True, slots=True)
class BetaBinomialComparison:
    """The Beta-Binomial model: each arm's posterior and ``1 − alpha`` credible interval,
    ``chance_to_win = P(p_t > p_c)``, the expected losses of shipping the treatment
    (``E[max(p_c − p_t, 0)]``) and of keeping the control (``E[max(p_t − p_c, 0)]``), all on the
    absolute scale, each within :data:`BETA_TOLERANCE` of the exact integral."""

    alpha: float
    control: BetaPosterior
    treatment: BetaPosterior
    control_interval: tuple[float, float]
    treatment_interval: tuple[float, float]
    chance_to_win: float
    expected_loss: float
    expected_loss_control: float


def beta_binomial_test(
    control: MetricSummary[float],
    treatment: MetricSummary[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
) -> BetaBinomialComparison:
    """Beta-Binomial comparison of two proportion summaries (module docstring)."""
    check_alpha(alpha)
    if not (prior_alpha > 0 and prior_beta > 0):
        raise InvalidInput(
            f"a Beta prior needs alpha > 0 and beta > 0, got {prior_alpha} and {prior_beta}",
            field="prior",
        )
    arms = []
    for summary, arm in ((control, "control"), (treatment, "treatment")):
        if summary.kind != "proportion":
            raise InvalidInput(
                f"the Beta-Binomial model needs proportion summaries ({arm})", field="kind"
            )
        n, successes = float(summary.n), float(summary.sum)
        if not 0 <= successes <= n:
            raise InvalidInput(
                f"the {arm} arm has {successes} successes out of {n} units", field="sum"
            )
        arms.append(BetaPosterior(prior_alpha + successes, prior_beta + n - successes))
    c, t = arms
    c_up, t_up = BetaPosterior(c.alpha + 1.0, c.beta), BetaPosterior(t.alpha + 1.0, t.beta)
    chance = prob_greater(t, c)
    # E[p_c·1{p_c > p_t}] = m_c·P(p_c⁺ > p_t), E[p_t·1{p_c > p_t}] = m_t·P(p_c > p_t⁺)
    loss_treatment = c.mean * prob_greater(c_up, t) - t.mean * prob_greater(c, t_up)
    loss_control = t.mean * prob_greater(t_up, c) - c.mean * prob_greater(t, c_up)
    return BetaBinomialComparison(
        alpha=alpha,
        control=c,
        treatment=t,
        control_interval=c.interval(1.0 - alpha),
        treatment_interval=t.interval(1.0 - alpha),
        chance_to_win=chance,
        expected_loss=max(loss_treatment, 0.0),
        expected_loss_control=max(loss_control, 0.0),
    )


def prob_greater(x: BetaPosterior, y: BetaPosterior) -> float:
    """``P(X > Y)`` for independent Beta variables, ``∫₀¹ F_Y(F_X⁻¹(u)) du``, to an absolute error
    below :data:`BETA_TOLERANCE`."""

    def integrand(u: float) -> float:
        return float(special.betainc(y.alpha, y.beta, special.betaincinv(x.alpha, x.beta, u)))

    value, _ = integrate.quad(
        integrand, 0.0, 1.0, epsabs=BETA_TOLERANCE / 10, epsrel=0.0, limit=200
    )
    return min(max(float(value), 0.0), 1.0)
