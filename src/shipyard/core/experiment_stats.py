"""Experiment statistics: summaries, fixed-horizon tests, SRM, CUPED, multiple comparisons.

Every analysis starts from per-arm summary statistics, so the event log can aggregate in SQL or
DuckDB and nothing here sees a row: :class:`MetricSummary` (``n``, ``Σy``, ``Σy²``) and, for
CUPED, :class:`CovariateSummary` (``n``, ``Σx``, ``Σx²``, ``Σxy``). The definitions follow
GrowthBook's engine (gbstats) so that users can compare figures; ``docs/statistics.md`` states
every formula, the defaults and where shipyard deliberately differs.

Variance of one unit's value: ``p(1 − p)`` for a ``"proportion"`` metric (``p = Σy / n``), the
sample variance ``(Σy² − (Σy)²/n) / (n − 1)`` for a ``"mean"`` metric.

The comparison functions are vectorised: a summary may hold NumPy arrays (one element per
simulated experiment, say) instead of numbers, and every figure of the result is then an array
of the same shape. Quantities that are undefined for the data (a control mean of 0 under a
relative lift, fewer than 2 units, zero variance) come out as NaN rather than raising.

- :func:`welch_ttest` — the headline analysis: absolute or relative lift, Welch–Satterthwaite
  degrees of freedom; the absolute form equals ``scipy.stats.ttest_ind(equal_var=False)``.
- :func:`proportions_ztest` — pooled two-proportion z-test (= statsmodels ``proportions_ztest``).
- :func:`srm_check` — sample-ratio mismatch (= ``scipy.stats.chisquare``), flagged at p < 0.001.
- :func:`cuped` — CUPED-adjusted summaries from a pre-period covariate.
- :func:`adjust_p_values` — Holm and Benjamini–Hochberg (= statsmodels ``multipletests``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

import numpy as np
import numpy.typing as npt
from scipy import stats

from shipyard.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
F = TypeVar("F", float, FloatArray)
"""A number, or an array of numbers (one per simulated experiment): the comparison functions
return arrays of the same shape when they are given arrays."""

MetricKind = Literal["mean", "proportion"]
Difference = Literal["relative", "absolute"]
Alternative = Literal["two-sided", "greater", "less"]
Correction = Literal["holm", "fdr_bh"]

METRIC_KINDS: tuple[MetricKind, ...] = get_args(MetricKind)
DIFFERENCES: tuple[Difference, ...] = get_args(Difference)
ALTERNATIVES: tuple[Alternative, ...] = get_args(Alternative)
CORRECTIONS: tuple[Correction, ...] = get_args(Correction)
DEFAULT_ALPHA = 0.05
SRM_THRESHOLD = 0.001


# ---------------------------------------------------------------- summaries
@dataclass(frozen=True, slots=True)
class MetricSummary(Generic[F]):
    """One arm's metric as sufficient statistics: units ``n``, ``Σy`` and ``Σy²``.

    For a ``"proportion"`` (binary) metric ``sum == sum_squares ==`` the number of successes and
    the variance is ``p(1 − p)``; for a ``"mean"`` metric the variance is the sample variance
    with ``n − 1``.
    """

    n: F
    sum: F
    sum_squares: F
    kind: MetricKind = "mean"

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise InvalidInput(
                f"metric kind {self.kind!r} is not one of {', '.join(METRIC_KINDS)}", field="kind"
            )
        if np.any(np.asarray(self.n) < 0):
            raise InvalidInput(f"a metric summary needs n >= 0, got {self.n}", field="n")

    @classmethod
    def from_values(
        cls, values: npt.ArrayLike, *, kind: MetricKind = "mean"
    ) -> MetricSummary[float]:
        """The summary of one arm's per-unit values (for ``"proportion"``, 0s and 1s)."""
        y = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(y).all():
            raise InvalidInput("metric values must be finite numbers", field="values")
        if kind == "proportion" and not np.isin(y, (0.0, 1.0)).all():
            raise InvalidInput("a proportion metric's values must be 0 or 1", field="values")
        return MetricSummary(float(y.size), float(y.sum()), float(np.dot(y, y)), kind)

    @staticmethod
    def proportion(n: F, successes: F) -> MetricSummary[F]:
        """A binary metric's summary from its count of units and of successes."""
        return MetricSummary(n, successes, successes, "proportion")

    @property
    def mean(self) -> F:
        """``Σy / n`` (NaN for ``n == 0``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return as_float64(self.sum) / as_float64(self.n)

    @property
    def variance(self) -> F:
        """A unit's variance: ``p(1 − p)`` for a proportion, the ``n − 1`` sample variance for a
        mean (clipped at 0 against rounding)."""
        n, mean = as_float64(self.n), self.mean
        if self.kind == "proportion":
            return mean * (1.0 - mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            centred = as_float64(self.sum_squares) - as_float64(self.sum) * mean
            return np.maximum(centred, 0.0) / (n - 1.0)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class CovariateSummary(Generic[F]):
    """One arm's pre-period covariate ``x`` for CUPED: ``n``, ``Σx``, ``Σx²`` and ``Σxy`` with the
    same units' metric values ``y``."""

    n: F
    sum: F
    sum_squares: F
    sum_products: F

    @classmethod
    def from_values(
        cls, covariate: npt.ArrayLike, values: npt.ArrayLike
    ) -> CovariateSummary[float]:
        """From each unit's covariate ``x`` and metric value ``y`` (same order, same length)."""
        x = np.asarray(covariate, dtype=np.float64).ravel()
        y = np.asarray(values, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise InvalidInput(
                f"covariate and metric values differ in length: {x.size} and {y.size}",
                field="covariate",
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidInput("covariate and metric values must be finite", field="covariate")
        return CovariateSummary(float(x.size), float(x.sum()), float(np.dot(x, x)), float(x @ y))


# ---------------------------------------------------------------- fixed-horizon tests
@dataclass(frozen=True, slots=True)
class Comparison(Generic[F]):
    """A fixed-horizon comparison of a treatment arm with the control arm.

    ``estimate`` is the lift: ``treatment_mean / control_mean − 1`` (``"relative"``) or
    ``treatment_mean − control_mean`` (``"absolute"``); ``se`` its standard error; ``df`` the
    degrees of freedom of the reference distribution (``inf`` for a z-test); ``statistic`` the t
    or z value; ``ci_low``/``ci_high`` the ``1 − alpha`` confidence interval, one-sided (with an
    infinite end) for a one-sided ``alternative``.
    """

    method: Literal["welch", "z"]
    difference: Difference
    alternative: Alternative
    alpha: float
    control_n: F
    treatment_n: F
    control_mean: F
    treatment_mean: F
    estimate: F
    se: F
    df: F
    statistic: F
    p_value: F
    ci_low: F
    ci_high: F

    def __post_init__(self) -> None:
        builtin_numbers(self)


def welch_ttest(
    control: MetricSummary[F],
    treatment: MetricSummary[F],
    *,
    difference: Difference = "relative",
    alternative: Alternative = "two-sided",
    alpha: float = DEFAULT_ALPHA,
) -> Comparison[F]:
    """Welch's t-test of the treatment's mean against the control's (GrowthBook's frequentist
    engine).

    With the variances of the arms' means ``V_c = s²_c/n_c`` and ``V_t = s²_t/n_t``: the
    absolute lift ``m_t − m_c`` has variance ``V_c + V_t``; the relative lift ``m_t/m_c − 1``
    has the delta-method variance ``V_t/m_c² + m_t²·V_c/m_c⁴``. Either way the statistic
    ``lift / se`` is referred to Student's t with the Welch–Satterthwaite degrees of freedom
    ``(V_c + V_t)² / (V_c²/(n_c − 1) + V_t²/(n_t − 1))`` and the interval is
    ``lift ± t_{df, 1−alpha/2} · se``. For a ``"mean"`` metric the absolute form equals
    ``scipy.stats.ttest_ind(treatment, control, equal_var=False)``.
    """
    _check_test_options(difference, alternative, alpha)
    n_c, n_t = as_float64(control.n), as_float64(treatment.n)
    mean_c, mean_t = control.mean, treatment.mean
    with np.errstate(divide="ignore", invalid="ignore"):
        v_c, v_t = control.variance / n_c, treatment.variance / n_t
        df = (v_c + v_t) ** 2 / (v_c**2 / (n_c - 1.0) + v_t**2 / (n_t - 1.0))
        estimate, se = lift(mean_c, mean_t, v_c, v_t, difference)
        statistic = estimate / se
    p_value = _p_value(statistic, df, alternative)
    ci_low, ci_high = _interval(estimate, se, df, alternative, alpha)
    return Comparison(
        method="welch",
        difference=difference,
        alternative=alternative,
        alpha=alpha,
        control_n=n_c,
        treatment_n=n_t,
        control_mean=mean_c,
        treatment_mean=mean_t,
        estimate=estimate,
        se=se,
        df=df,
        statistic=statistic,
        p_value=p_value,
        ci_low=ci_low,
        ci_high=ci_high,
    )


def proportions_ztest(
    control: MetricSummary[F],
    treatment: MetricSummary[F],
    *,
    alternative: Alternative = "two-sided",
    alpha: float = DEFAULT_ALPHA,
) -> Comparison[F]:
    """The pooled two-proportion z-test of ``p_t − p_c``, as statsmodels
    ``proportions_ztest([x_t, x_c], [n_t, n_c])``.

    ``se = sqrt(p̄(1 − p̄)(1/n_c + 1/n_t))`` with the pooled ``p̄ = (x_c + x_t)/(n_c + n_t)`` (the
    standard error under the null hypothesis) gives ``statistic`` and ``p_value``. The interval
    is Wald's, with the *unpooled* standard error ``sqrt(p_c(1−p_c)/n_c + p_t(1−p_t)/n_t)``
    (= statsmodels ``confint_proportions_2indep(method="wald")``): a pooled interval would assume
    the null.
    """
    _check_test_options("absolute", alternative, alpha)
    if control.kind != "proportion" or treatment.kind != "proportion":
        raise InvalidInput("the two-proportion z-test needs proportion summaries", field="kind")
    n_c, n_t = as_float64(control.n), as_float64(treatment.n)
    p_c, p_t = control.mean, treatment.mean
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (as_float64(control.sum) + as_float64(treatment.sum)) / (n_c + n_t)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
        estimate = p_t - p_c
        statistic = estimate / se
        wald_se = np.sqrt(p_c * (1.0 - p_c) / n_c + p_t * (1.0 - p_t) / n_t)
    inf = shaped_like(math.inf, n_c)
    p_value = _p_value(statistic, inf, alternative)
    ci_low, ci_high = _interval(estimate, wald_se, inf, alternative, alpha)
    return Comparison(
        method="z",
        difference="absolute",
        alternative=alternative,
        alpha=alpha,
        control_n=n_c,
        treatment_n=n_t,
        control_mean=p_c,
        treatment_mean=p_t,
        estimate=estimate,
        se=se,
        df=inf,
        statistic=statistic,
        p_value=p_value,
        ci_low=ci_low,
        ci_high=ci_high,
    )


def lift(
    control_mean: F, treatment_mean: F, control_var: F, treatment_var: F, difference: Difference
) -> tuple[F, F]:
    """``(lift, se)`` from the arms' means and the variances of those means (``s²/n``):
    absolute, or relative by the delta method."""
    m_c, m_t = control_mean, treatment_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        if difference == "absolute":
            return m_t - m_c, np.sqrt(control_var + treatment_var)
        variance = treatment_var / m_c**2 + m_t**2 * control_var / m_c**4
        return m_t / m_c - 1.0, np.sqrt(variance)


# ---------------------------------------------------------------- sample-ratio mismatch
@dataclass(frozen=True, slots=True)
class SrmCheck:
    """Sample-ratio-mismatch check: are the arms' unit counts consistent with their weights?

    ``flagged`` (``p_value < threshold``) means assignment or logging is broken somewhere and no
    decision may be taken on these data.
    """

    counts: tuple[int, ...]
    weights: tuple[float, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    threshold: float
    flagged: bool

    def __post_init__(self) -> None:
        builtin_numbers(self)


def srm_check(
    counts: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmCheck:
    """Pearson's chi-square goodness of fit of the observed unit counts per arm against the
    configured weights (any positive scale), ``k − 1`` degrees of freedom: equal to
    ``scipy.stats.chisquare(counts, total · weights / Σweights)``.

    Arms with weight 0 and no units take no part; units in an arm of weight 0 are a mismatch
    however few (statistic ``inf``, p-value 0). With no units at all nothing is flagged.
    """
    if len(counts) != len(weights) or len(counts) < 2:
        raise InvalidInput(
            f"an SRM check needs one count per weight and at least two arms, got {len(counts)} "
            f"counts and {len(weights)} weights",
            field="counts",
        )
    observed = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if (observed < 0).any() or not np.isfinite(observed).all():
        raise InvalidInput(f"unit counts must be >= 0, got {list(counts)}", field="counts")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise InvalidInput(
            f"weights must be >= 0 with a positive sum, got {list(weights)}", field="weights"
        )
    if not 0.0 < threshold < 1.0:
        raise InvalidInput(f"threshold must lie in (0, 1), got {threshold}", field="threshold")
    total = observed.sum()
    expected = total * w / w.sum()
    taking_part = (w > 0) | (observed > 0)
    if total == 0 or taking_part.sum() < 2:
        statistic, p_value = 0.0, 1.0
    elif (observed[w == 0] > 0).any():
        statistic, p_value = math.inf, 0.0
    else:
        o, e = observed[taking_part], expected[taking_part]
        statistic = float(((o - e) ** 2 / e).sum())
        p_value = float(stats.chi2.sf(statistic, o.size - 1))
    return SrmCheck(
        counts=tuple(int(c) for c in counts),
        weights=tuple(float(x) for x in w),
        expected=tuple(float(x) for x in expected),
        statistic=statistic,
        p_value=p_value,
        threshold=threshold,
        flagged=p_value < threshold,
    )


# ---------------------------------------------------------------- CUPED
@dataclass(frozen=True, slots=True)
class CupedResult(Generic[F]):
    """CUPED-adjusted summaries (kind ``"mean"``) to compare with any test here, and the figures
    used: ``theta``, the pooled within-arm correlation of metric and covariate (the adjusted
    variance is about ``1 − correlation²`` times the raw one) and the covariate's pooled mean."""

    theta: F
    correlation: F
    covariate_mean: F
    control: MetricSummary[F]
    treatment: MetricSummary[F]

    def __post_init__(self) -> None:
        builtin_numbers(self)


def cuped(
    control: MetricSummary[F],
    control_covariate: CovariateSummary[F],
    treatment: MetricSummary[F],
    treatment_covariate: CovariateSummary[F],
) -> CupedResult[F]:
    """Adjust each unit's value to ``y − θ(x − x̄)`` with a pre-period covariate ``x``.

    ``θ = Σ S_xy / Σ S_xx`` summed over both arms, ``S_xy = Σxy − Σx·Σy/n`` and
    ``S_xx = Σx² − (Σx)²/n`` within each arm: the slope of ``y`` on ``x`` with a separate intercept
    per arm, so a treatment effect does not leak into θ. ``x̄`` is the covariate's mean over both
    arms, so adjusted means stay on the metric's scale and relative lifts keep their meaning.
    θ and x̄ are treated as known (their estimation noise is O(1/n) of the variance). θ is 0
    when the covariate does not vary.
    """
    arms = ((control, control_covariate, "control"), (treatment, treatment_covariate, "treatment"))
    for metric, covariate, arm in arms:
        if np.any(np.asarray(metric.n) != np.asarray(covariate.n)):
            raise InvalidInput(
                f"the {arm} metric and covariate summaries count different units: "
                f"{metric.n} and {covariate.n}",
                field="covariate",
            )
    s_xx = _centred(control_covariate.sum_squares, control_covariate.sum, control.n)
    s_xx = s_xx + _centred(treatment_covariate.sum_squares, treatment_covariate.sum, treatment.n)
    s_yy = _centred(control.sum_squares, control.sum, control.n)
    s_yy = s_yy + _centred(treatment.sum_squares, treatment.sum, treatment.n)
    s_xy = _cross(control_covariate, control) + _cross(treatment_covariate, treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = s_xy / s_xx
        correlation = s_xy / np.sqrt(s_xx * s_yy)
        x_mean = (as_float64(control_covariate.sum) + as_float64(treatment_covariate.sum)) / (
            as_float64(control.n) + as_float64(treatment.n)
        )
    # no covariate variation (or no units): no adjustment
    theta = shaped_like(np.where((s_xx > 0) & np.isfinite(slope), slope, 0.0), slope)
    return CupedResult(
        theta=theta,
        correlation=correlation,
        covariate_mean=x_mean,
        control=_adjusted(control, control_covariate, theta, x_mean),
        treatment=_adjusted(treatment, treatment_covariate, theta, x_mean),
    )


def _adjusted(
    metric: MetricSummary[F], covariate: CovariateSummary[F], theta: F, x_mean: F
) -> MetricSummary[F]:
    n, sum_y = as_float64(metric.n), as_float64(metric.sum)
    sum_x = as_float64(covariate.sum)
    shift = sum_x - n * x_mean  # Σ(x − x̄)
    total = sum_y - theta * shift
    squares = (
        as_float64(metric.sum_squares)
        - 2.0 * theta * (as_float64(covariate.sum_products) - x_mean * sum_y)
        + theta**2 * (as_float64(covariate.sum_squares) - 2.0 * x_mean * sum_x + n * x_mean**2)
    )
    return MetricSummary(n, total, squares, "mean")


def _centred(squares: F, total: F, n: F) -> F:
    with np.errstate(divide="ignore", invalid="ignore"):
        return as_float64(squares) - as_float64(total) ** 2 / as_float64(n)


def _cross(covariate: CovariateSummary[F], metric: MetricSummary[F]) -> F:
    with np.errstate(divide="ignore", invalid="ignore"):
        products = as_float64(covariate.sum_products)
        return products - as_float64(covariate.sum) * as_float64(metric.sum) / as_float64(metric.n)


# ---------------------------------------------------------------- multiple comparisons
def adjust_p_values(p_values: npt.ArrayLike, *, method: Correction) -> FloatArray:
    """Adjusted p-values, in the input's order, for a family of tests (variants × metrics).

    ``"holm"`` controls the family-wise error rate: with the p-values sorted ascending,
    ``p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎)``. ``"fdr_bh"`` (Benjamini–Hochberg) controls
    the false discovery rate: ``p̃₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎/j)``. Reject where
    ``p̃ < alpha``. Equal to statsmodels ``multipletests(p, method=...)[1]``.
    """
    if method not in CORRECTIONS:
        raise InvalidInput(
            f"correction {method!r} is not one of {', '.join(CORRECTIONS)}", field="method"
        )
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InvalidInput(
            f"p-values must be one-dimensional, got shape {p.shape}", field="p_values"
        )
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise InvalidInput("p-values must lie in [0, 1] (no NaN)", field="p_values")
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    rank = np.arange(1, m + 1, dtype=np.float64)
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - rank + 1.0))
    else:
        adjusted = np.minimum.accumulate((ranked * m / rank)[::-1])[::-1]
    out = np.empty(m, dtype=np.float64)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ---------------------------------------------------------------- shared helpers
def check_alpha(alpha: float) -> None:
    """Raise :class:`InvalidInput` unless ``0 < alpha < 1``."""
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")


def check_difference(difference: str) -> None:
    """Raise :class:`InvalidInput` unless ``difference`` is ``"relative"`` or ``"absolute"``."""
    if difference not in DIFFERENCES:
        raise InvalidInput(
            f"difference {difference!r} is not one of {', '.join(DIFFERENCES)}",
            field="difference",
        )


def builtin_numbers(result: Any) -> None:
    """Turn a frozen result's NumPy scalar fields into ``float``/``bool`` (arrays stay), so that
    results print plainly and serialise with any JSON library."""
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, np.bool_):
            object.__setattr__(result, field.name, bool(value))
        elif isinstance(value, np.floating | np.integer):
            object.__setattr__(result, field.name, float(value))


def _check_test_options(difference: str, alternative: str, alpha: float) -> None:
    check_difference(difference)
    check_alpha(alpha)
    if alternative not in ALTERNATIVES:
        raise InvalidInput(
            f"alternative {alternative!r} is not one of {', '.join(ALTERNATIVES)}",
            field="alternative",
        )


def as_float64(value: F) -> F:
    """The value in float64 arithmetic (a NumPy scalar or array: division by 0 gives inf/NaN,
    not an exception)."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=False)
    return np.float64(value)


def shaped_like(value: npt.ArrayLike, template: F) -> F:
    """``value`` (a number, or an array that broadcasts) in ``template``'s form: a float64 array
    of its shape, or a float."""
    array = np.asarray(value, dtype=np.float64)
    if isinstance(template, np.ndarray):
        return np.broadcast_to(array, template.shape).copy()
    return np.float64(array.item())


def _p_value(statistic: F, df: F, alternative: Alternative) -> F:
    with np.errstate(invalid="ignore"):
        if alternative == "greater":
            return stats.t.sf(statistic, df)  # type: ignore[no-any-return]
        if alternative == "less":
            return stats.t.cdf(statistic, df)  # type: ignore[no-any-return]
        return 2.0 * stats.t.sf(np.abs(statistic), df)  # type: ignore[no-any-return]


def _interval(estimate: F, se: F, df: F, alternative: Alternative, alpha: float) -> tuple[F, F]:
    with np.errstate(invalid="ignore"):
        if alternative == "two-sided":
            half = stats.t.ppf(1.0 - alpha / 2.0, df) * se
            return estimate - half, estimate + half
        half = stats.t.ppf(1.0 - alpha, df) * se
        infinite = shaped_like(math.inf, estimate)
        if alternative == "greater":
            return estimate - half, infinite
        return -infinite, estimate + half
