"""Always-valid inference: normal-mixture confidence sequences and their p-values.

A confidence sequence (CS) holds at every sample size at once: with probability at least
``1 − alpha`` it never excludes the true lift, however often it is looked at, so an experiment
may be analysed after every batch and stopped the first time the CS excludes 0 without inflating
the false-positive rate (Ville's inequality). A fixed-horizon interval looked at 20 times excludes
a true 0 far more often than ``alpha``.

Definition (Howard et al. 2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", the two-sided normal mixture; Waudby-Smith et al. 2023, "Time-uniform central limit
theory and asymptotic confidence sequences", for the plug-in variance; GrowthBook's sequential
engine uses the same boundary). With the arms' means ``m_c``, ``m_t``, the variances of those
means ``V_c = s²_c/n_c``, ``V_t = s²_t/n_t`` (unit variances as in
:mod:`~shipyard.core.experiment_stats`), ``N = n_c + n_t`` and ``r = N·ρ²``::

    ρ² = (−2·ln α + ln(−2·ln α + 1)) / N*                       (Waudby-Smith et al., eq. 161)
    c  = sqrt( (1 + r)/r · ln((1 + r)/α²) )                     the boundary, in standard errors
    absolute lift  Δ = m_t − m_c,  s² = V_c + V_t:   CS = Δ ± c·s
    ln e = −½·ln(1 + r) + (Δ/s)² · r / (2·(1 + r))              e-value against "no difference"
    p  = min(1, 1/e)                                            ≤ alpha exactly when 0 ∉ CS

``N*`` (``tuning_n``, the *total* units over both arms) is the sample size at which the CS is
narrowest relative to a fixed-horizon interval: set it to the planned size of the experiment
(GrowthBook's default, 5,000, is :data:`DEFAULT_TUNING_N`). ``e`` is the normal-mixture
likelihood ratio (the mixture SPRT of Johari et al.) with mixing variance ``r·s²`` on the lift.
The guarantee is asymptotic (it rests on the CLT and the plug-in variance), like every
GrowthBook/Eppo/Statsig sequential test: with a handful of units a rate's plug-in variance can be
0 in both arms and the CS collapses to a point, so the rollout rules
(:mod:`~shipyard.core.rollout_rules`) wait for ``MIN_UNITS`` units per arm.

**Relative lift** ``R = m_t/m_c − 1``: the CS is Fieller's, the set of ``R`` whose linear
contrast ``m_t − (1 + R)·m_c`` the same boundary does not reject::

    {R : |m_t − (1 + R)·m_c| ≤ c · sqrt(V_t + (1 + R)²·V_c)}

an interval with closed-form ends when ``m_c² > c²·V_c`` (the control's mean is clearly away from
0), unbounded (reported as ``(−inf, inf)``) otherwise. It covers the true ``R`` whenever the CS
of that one contrast covers 0, so it is as valid as the absolute CS; and "no relative change" is
"no difference", so the e-value and p-value are the absolute ones. This is where shipyard
deliberately differs from GrowthBook, whose sequential relative interval is ``R̂ ± c·se`` with
the delta-method ``se``: at small counts that ``se`` collapses (a treatment with 0 conversions has
``se = 0``), and in simulation 17% of A/A experiments (2% rate, 20 looks of 100 units per arm)
looked significant at some look. For large samples the two intervals agree. ``estimate`` and
``se`` of a relative comparison are the point estimate and its delta-method standard error,
for reference.

Across looks, the running minimum of the p-values (:func:`running_min_p_value`) and the running
intersection of the intervals (:func:`running_intersection`) are also valid and never move back;
a single look's figures are valid on their own too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic

import numpy as np
import numpy.typing as npt

from shipyard.core.experiment_stats import (
    DEFAULT_ALPHA,
    Difference,
    F,
    FloatArray,
    MetricSummary,
    as_float64,
    builtin_numbers,
    check_alpha,
    check_difference,
    lift,
    shaped_like,
)
from shipyard.errors import InvalidInput

DEFAULT_TUNING_N = 5000


@dataclass(frozen=True, slots=True)
class SequentialComparison(Generic[F]):
    """An always-valid comparison of a treatment arm with the control arm.

    ``estimate``/``se`` as in :class:`~shipyard.core.experiment_stats.Comparison`; ``e_value``
    the evidence against "no lift"; ``p_value = min(1, 1/e_value)``; ``ci_low``/``ci_high`` the
    two-sided ``1 − alpha`` confidence sequence at this look.
    """

    difference: Difference
    alpha: float
    tuning_n: float
    control_n: F
    treatment_n: F
    control_mean: F
    treatment_mean: F
    estimate: F
    se: F
    e_value: F
    p_value: F
    ci_low: F
    ci_high: F

    def __post_init__(self) -> None:
        builtin_numbers(self)


def sequential_test(
    control: MetricSummary[F],
    treatment: MetricSummary[F],
    *,
    difference: Difference = "relative",
    alpha: float = DEFAULT_ALPHA,
    tuning_n: float = DEFAULT_TUNING_N,
) -> SequentialComparison[F]:
    """The normal-mixture confidence sequence and always-valid p-value for the lift (module
    docstring), from the same summaries as the fixed-horizon tests."""
    check_difference(difference)
    n_c, n_t = as_float64(control.n), as_float64(treatment.n)
    mean_c, mean_t = control.mean, treatment.mean
    c = boundary(n_c + n_t, alpha=alpha, tuning_n=tuning_n)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        var_c, var_t = control.variance / n_c, treatment.variance / n_t
        difference_se = np.sqrt(var_c + var_t)
        z = (mean_t - mean_c) / difference_se
        r = (n_c + n_t) * _rho_squared(alpha, tuning_n)
        log_e = -0.5 * np.log1p(r) + z**2 * r / (2.0 * (1.0 + r))
        e_value, p_value = np.exp(log_e), np.minimum(1.0, np.exp(-log_e))
        estimate, se = lift(mean_c, mean_t, var_c, var_t, difference)
    if difference == "absolute":
        ci_low, ci_high = estimate - c * se, estimate + c * se
    else:
        ci_low, ci_high = fieller_interval(mean_c, mean_t, var_c, var_t, c)
    return SequentialComparison(
        difference=difference,
        alpha=alpha,
        tuning_n=float(tuning_n),
        control_n=n_c,
        treatment_n=n_t,
        control_mean=mean_c,
        treatment_mean=mean_t,
        estimate=estimate,
        se=se,
        e_value=e_value,
        p_value=p_value,
        ci_low=ci_low,
        ci_high=ci_high,
    )


def boundary(n_total: F, *, alpha: float, tuning_n: float) -> F:
    """``c``: the CS's half-width in standard errors after ``n_total`` units over both arms."""
    check_alpha(alpha)
    if not (tuning_n > 0 and math.isfinite(tuning_n)):
        raise InvalidInput(f"tuning_n must be a number > 0, got {tuning_n}", field="tuning_n")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = as_float64(n_total) * _rho_squared(alpha, tuning_n)
        return np.sqrt((1.0 + r) / r * (np.log1p(r) - 2.0 * math.log(alpha)))  # type: ignore[no-any-return]


def fieller_interval(mean_c: F, mean_t: F, var_c: F, var_t: F, c: F) -> tuple[F, F]:
    """``{R : |m_t − (1+R)·m_c| ≤ c·sqrt(V_t + (1+R)²·V_c)}`` as ``(low, high)``: the roots of the
    quadratic in ``u = 1 + R``, ``(m_c² − c²V_c)·u² − 2·m_c·m_t·u + m_t² − c²V_t = 0``, minus 1;
    ``(−inf, inf)`` when ``m_c² ≤ c²·V_c`` (unbounded set); NaN where an input is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = mean_c**2 - c**2 * var_c
        b = mean_c * mean_t
        d = mean_t**2 - c**2 * var_t
        root = np.sqrt(np.maximum(b**2 - a * d, 0.0))
        q = b + np.where(b < 0, -root, root)  # no cancellation: the roots are q/a and d/q
        first = q / a
        second = np.where(q == 0, first, d / q)
        low = np.minimum(first, second) - 1.0
        high = np.maximum(first, second) - 1.0
        bounded = a > 0
        low = np.where(bounded, low, np.where(np.isnan(a), np.nan, -np.inf))
        high = np.where(bounded, high, np.where(np.isnan(a), np.nan, np.inf))
    return shaped_like(low, mean_c), shaped_like(high, mean_c)


def _rho_squared(alpha: float, tuning_n: float) -> float:
    log_alpha = math.log(alpha)
    return (-2.0 * log_alpha + math.log(-2.0 * log_alpha + 1.0)) / tuning_n


def running_min_p_value(p_values: npt.ArrayLike, *, axis: int = -1) -> FloatArray:
    """The always-valid p-value after each look: the running minimum along ``axis`` (looks in
    order)."""
    return np.minimum.accumulate(np.asarray(p_values, dtype=np.float64), axis=axis)


def running_intersection(
    ci_low: npt.ArrayLike, ci_high: npt.ArrayLike, *, axis: int = -1
) -> tuple[FloatArray, FloatArray]:
    """The confidence sequence after each look as the intersection of all looks so far:
    ``(running max of ci_low, running min of ci_high)`` along ``axis``."""
    low = np.maximum.accumulate(np.asarray(ci_low, dtype=np.float64), axis=axis)
    high = np.minimum.accumulate(np.asarray(ci_high, dtype=np.float64), axis=axis)
    return low, high
