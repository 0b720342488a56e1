"""Drift statistics: per-column two-sample tests and distances, test selection, dataset drift share.

Pure NumPy/SciPy: the inputs are a column's values (numeric) or category counts (categorical and
boolean), never files. :mod:`shipyard.monitoring.drift` reads tables and Parquet into these.

Numeric columns are held as a :class:`NumericSample`: the *finite* values, sorted once, plus the
number of ``-inf`` and ``+inf`` values (NaN and nulls are dropped). Categorical and boolean columns
are held as a :class:`CategoricalSample`: counts per category (booleans as ``"false"``/``"true"``).

Methods (``statistic`` / ``p_value``; a column drifts when ``p_value < threshold`` for tests, when
``statistic >= threshold`` for distances; default thresholds in :data:`DEFAULT_THRESHOLDS`):

``ks``
    Two-sample Kolmogorov–Smirnov, two-sided, on the finite values: ``scipy.stats.ks_2samp``
    with ``method="auto"`` (exact when both samples have ≤ 10,000 values, Smirnov's asymptotic
    ``kstwo.sf(D, round(n·m/(n+m)))`` above, as scipy chooses). Statistic D, p-value.
``wasserstein``
    Wasserstein-1 distance between the finite values (``scipy.stats.wasserstein_distance``)
    divided by the reference's population standard deviation (``ddof=0``) floored at
    :data:`WASSERSTEIN_MIN_NORM` — Evidently's "normed" Wasserstein, so its default threshold
    0.1 reads "the current values moved a tenth of a reference standard deviation". No p-value.
    Computed exactly in O(n + m) from the sorted samples (:func:`wasserstein_distance_sorted`).
``chi2``
    Pearson's chi-square test of homogeneity on the 2 × k contingency table of reference and
    current counts (``scipy.stats.chi2_contingency`` with its default ``correction=True``: Yates's
    continuity correction is applied when the table has one degree of freedom, i.e. exactly two
    categories — conservative there). Categories seen on either side only count with 0 on the
    other. Statistic chi², p-value.
``chisquare``
    Goodness of fit of the current counts to the reference *frequencies*
    (``scipy.stats.chisquare(current, reference · n_current / n_reference)``). Not a two-sample
    test — it ignores the reference's sampling noise and over-flags large samples; it exists
    only for numbers comparable with Evidently's "chisquare". A category absent from the
    reference has expected count 0: statistic ``inf``, p-value 0.
``jensenshannon``
    Jensen–Shannon *distance* (the square root of the divergence) in **base 2**, so it lies in
    [0, 1]: ``scipy.spatial.distance.jensenshannon(reference, current, base=2)`` on the counts.
    No p-value.
``psi``
    Population stability index ``Σ (c_i − r_i) · ln(c_i / r_i)`` over the bins' proportions,
    each proportion that is 0 replaced by :data:`PSI_EPSILON` (1e-4, as Evidently; the
    proportions are not renormalised). Rules of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25
    major shift. No p-value. Every result reports it in ``psi`` whatever its method.

Bins for the binned methods (``chi2``, ``chisquare``, ``jensenshannon``, ``psi``): categories
for categorical columns (the union of both sides); for numeric columns the reference profile's
histogram (:mod:`shipyard.core.profile`): edges at the distinct reference deciles
(``np.quantile(..., method="inverted_cdf")``), bins ``[-inf, e1) … [ek, +inf]``, ±inf values in
the outer bins.

Test selection (:func:`select_method`), overridable per column: with *n* the number of values a
test sees on each side (finite values for numeric columns, non-null values otherwise), when the
smaller side has ``n ≤ 1000`` (:data:`MAX_TEST_N`) a p-value test runs — ``ks`` for numeric,
``chi2`` for categorical and boolean; when both sides are larger, a distance, whose verdict does
not turn every tiny but real difference of a large sample into an alarm — ``wasserstein`` for
numeric, ``jensenshannon`` for categorical and boolean. The smaller side decides because a
distance's no-drift noise shrinks like ``1/sqrt(n)`` of the smaller sample: a window of a few
hundred predictions against a reference of a million still gets a calibrated test.

False alarms (seeded simulations, no drift, ``tests/test_drift.py``): the p-value tests flag a
column at their threshold's rate (KS exactly at most α — its exact p-values are discrete —, chi²
at about α). The distances have no nominal rate and their no-drift values shrink like
``1/sqrt(n)``: with normal data the normed Wasserstein reaches 0.1 in about 4% of no-drift runs
at 1,001 values per side, 0.2% at 2,000 and 0 of 20,000 at 5,000; the Jensen–Shannon distance of
10 categories reaches 0.1 in 0.03% at 1,001 and never from 2,000 on. Heavy tails or many rare
categories push these up — raise ``max_test_n`` or the thresholds for such columns.
Evidently computes Jensen–Shannon with the natural log: its figure is ``sqrt(ln 2) ≈ 0.833``
times ours.

Dataset drift (:func:`drift_share`): the share of tested columns that drifted, and a verdict when
the share is at least a threshold (0.5 by default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy import spatial, stats

from shipyard.errors import InvalidInput

Method = Literal["ks", "wasserstein", "chi2", "chisquare", "jensenshannon", "psi"]
DriftKind = Literal["numeric", "boolean", "categorical"]

METHODS: tuple[Method, ...] = get_args(Method)
KINDS: tuple[DriftKind, ...] = get_args(DriftKind)
P_VALUE_METHODS: frozenset[Method] = frozenset({"ks", "chi2", "chisquare"})
NUMERIC_METHODS: frozenset[Method] = frozenset(METHODS)
CATEGORICAL_METHODS: frozenset[Method] = frozenset({"chi2", "chisquare", "jensenshannon", "psi"})
DEFAULT_THRESHOLDS: Mapping[Method, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "chisquare": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
MAX_TEST_N = 1000
DEFAULT_SHARE_THRESHOLD = 0.5
PSI_EPSILON = 1e-4
JS_BASE = 2.0
WASSERSTEIN_MIN_NORM = 1e-3
DEFAULT_BINS = 10
HISTOGRAM_MAX_CATEGORIES = 50

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# ---------------------------------------------------------------- samples
@dataclass(frozen=True, slots=True, eq=False)
class NumericSample:
    """A numeric column: its finite values sorted ascending, and its ±inf counts.

    Build it with :meth:`from_values`, which sorts; the constructor trusts its arguments.
    """

    values: FloatArray
    neg_inf: int = 0
    pos_inf: int = 0

    @classmethod
    def from_values(cls, values: npt.ArrayLike, *, copy: bool = True) -> NumericSample:
        """From any numeric values: NaN dropped, ±inf counted, the finite values sorted.
        ``copy=False`` sorts a float64 array in place when every value is finite."""
        x = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(x)
        if finite.all():
            if copy:
                return cls(np.sort(x))
            x.sort()
            return cls(x)
        pos_inf = int(np.count_nonzero(x == np.inf))
        neg_inf = int(np.count_nonzero(x == -np.inf))
        return cls(np.sort(x[finite]), neg_inf=neg_inf, pos_inf=pos_inf)

    @property
    def size(self) -> int:
        """Finite values: what ``ks`` and ``wasserstein`` see."""
        return len(self.values)

    @property
    def binned_size(self) -> int:
        """Finite and infinite values: what the binned methods see."""
        return len(self.values) + self.neg_inf + self.pos_inf


@dataclass(frozen=True, slots=True)
class CategoricalSample:
    """A categorical column as counts per category (no nulls)."""

    counts: Mapping[str, int]

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> CategoricalSample:
        """Counts of the non-None values, each as ``str`` (booleans as ``"false"``/``"true"``)."""
        out: dict[str, int] = {}
        for value in values:
            if value is None:
                continue
            key = category_label(value)
            out[key] = out.get(key, 0) + 1
        return cls(out)

    @property
    def size(self) -> int:
        return sum(self.counts.values())


def category_label(value: Any) -> str:
    """A category as text; booleans as ``"false"``/``"true"``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------- statistics
def ks_test(reference: NumericSample, current: NumericSample) -> tuple[float, float]:
    """(D, p-value) of the two-sided two-sample KS test on the finite values; equal to
    ``scipy.stats.ks_2samp(reference, current)`` (``method="auto"``)."""
    u, v = _nonempty(reference, "reference"), _nonempty(current, "current")
    n1, n2 = len(u), len(v)
    if max(n1, n2) <= 10_000:  # scipy's MAX_AUTO_N: its exact path, run by scipy itself
        result = stats.ks_2samp(u, v)
        return float(result.statistic), float(result.pvalue)
    # scipy's asymptotic path, on the already sorted samples (the same arithmetic)
    data_all = np.concatenate([u, v])
    cddiffs = np.searchsorted(u, data_all, side="right") / n1
    cddiffs -= np.searchsorted(v, data_all, side="right") / n2
    min_s = float(np.clip(-cddiffs.min(), 0, 1))
    max_s = float(cddiffs.max())
    d = min_s if min_s > max_s else max_s
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def wasserstein_distance_sorted(u: FloatArray, v: FloatArray) -> float:
    """Wasserstein-1 distance between two non-empty *sorted* finite samples; equal to
    ``scipy.stats.wasserstein_distance(u, v)`` up to rounding.

    Uses ``W1 = ∫₀¹ |Qᵤ(t) − Qᵥ(t)| dt``: the quantile functions are step functions that
    change at ``i/n`` and ``j/m``; in units of ``1/lcm(n, m)`` those breakpoints are the integers
    ``i·(m/g)`` and ``j·(n/g)`` (``g = gcd(n, m)``) and their merged order has a closed form, so the
    integral is a sum over ``n + m`` intervals in O(n + m), with no merge sort or binary search.
    """
    n, m = len(u), len(v)
    if n == 0 or m == 0:
        raise InvalidInput("the Wasserstein distance needs values on both sides", field="values")
    g = math.gcd(n, m)
    step_u, step_v = m // g, n // g
    lcm = n * step_u
    if n == m:  # every interval pairs u[k] with v[k]
        gaps = np.subtract(u, v)
        return float(np.abs(gaps, out=gaps).sum() / n)
    if lcm >= 2**62:  # the integer breakpoints would overflow: scipy's own arithmetic
        return float(stats.wasserstein_distance(u, v))
    # right ends of the n + m intervals in merged order (u before v on a tie), in place where
    # possible: a few arrays of n + m elements, the cost of this function
    ends = np.empty(n + m, dtype=np.int64)
    index = np.arange(1, n + 1, dtype=np.int64)
    at = index * step_u
    index -= 1
    index += (at - 1) // step_v
    ends[index] = at
    index = np.arange(1, m + 1, dtype=np.int64)
    at = index * step_v
    index -= 1
    index += at // step_u
    ends[index] = at
    del index, at
    lengths = np.empty(n + m, dtype=np.float64)
    lengths[0] = ends[0]
    np.subtract(ends[1:], ends[:-1], out=lengths[1:])
    ends -= 1
    position = ends // step_u  # the u value on each interval: ceil(end / step_u) - 1
    gaps = u[position]
    np.floor_divide(ends, step_v, out=position)
    gaps -= v[position]
    np.abs(gaps, out=gaps)
    return float(np.dot(lengths, gaps) / lcm)


def normed_wasserstein(reference: NumericSample, current: NumericSample) -> float:
    """Wasserstein-1 distance divided by ``max(std(reference), WASSERSTEIN_MIN_NORM)``."""
    u, v = _nonempty(reference, "reference"), _nonempty(current, "current")
    norm = max(float(np.std(u)), WASSERSTEIN_MIN_NORM)
    return wasserstein_distance_sorted(u, v) / norm


def chi2_contingency_test(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, correction: bool = True
) -> tuple[float, float]:
    """(chi², p-value) of the 2 × k homogeneity test on aligned counts; equal to
    ``scipy.stats.chi2_contingency([reference, current], correction=correction)``. Bins empty
    on both sides are dropped (scipy rejects them); one remaining bin gives (0.0, 1.0)."""
    table = _contingency(reference, current)
    result = stats.chi2_contingency(table, correction=correction)
    return float(result.statistic), float(result.pvalue)


def chisquare_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """(chi², p-value) of the goodness of fit of ``current`` to the reference frequencies;
    equal to ``scipy.stats.chisquare(current, reference * n_current / n_reference)``."""
    table = _contingency(reference, current)
    ref, cur = table[0].astype(np.float64), table[1].astype(np.float64)
    expected = ref * (cur.sum() / ref.sum())
    if np.any((expected == 0) & (cur > 0)):
        return math.inf, 0.0
    result = stats.chisquare(cur, expected)
    return float(result.statistic), float(result.pvalue)


def jensenshannon_distance(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, base: float = JS_BASE
) -> float:
    """Jensen–Shannon distance between the normalised counts; equal to
    ``scipy.spatial.distance.jensenshannon(reference, current, base=base)``."""
    table = _contingency(reference, current, drop_empty=False).astype(np.float64)
    return float(spatial.distance.jensenshannon(table[0], table[1], base=base))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of aligned counts; zero proportions become ``epsilon``."""
    table = _contingency(reference, current, drop_empty=False).astype(np.float64)
    r = table[0] / table[0].sum()
    c = table[1] / table[1].sum()
    r[r == 0] = epsilon
    c[c == 0] = epsilon
    return float(np.sum((c - r) * np.log(c / r)))


def _contingency(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, drop_empty: bool = True
) -> IntArray:
    ref = np.asarray(reference, dtype=np.int64).ravel()
    cur = np.asarray(current, dtype=np.int64).ravel()
    if ref.shape != cur.shape:
        raise InvalidInput(
            f"reference and current counts must align; got {len(ref)} and {len(cur)} bins",
            field="counts",
        )
    if (ref < 0).any() or (cur < 0).any():
        raise InvalidInput("counts must be >= 0", field="counts")
    if ref.sum() == 0 or cur.sum() == 0:
        side = "reference" if ref.sum() == 0 else "current"
        raise InvalidInput(f"the {side} counts are all zero; nothing to compare", field=side)
    table = np.vstack([ref, cur])
    return table[:, table.sum(axis=0) > 0] if drop_empty else table


def _nonempty(sample: NumericSample, side: str) -> FloatArray:
    if sample.size == 0:
        raise InvalidInput(f"the {side} sample has no finite values", field=side)
    return sample.values


# ---------------------------------------------------------------- bins
def numeric_bin_edges(reference: NumericSample, bins: int = DEFAULT_BINS) -> FloatArray:
    """The profile's histogram edges: distinct reference quantiles at ``1/bins … (bins-1)/bins``
    (``method="inverted_cdf"``), as :func:`shipyard.core.profile.profile_table` computes them."""
    if bins < 1:
        raise InvalidInput(f"bins must be >= 1, got {bins}", field="bins")
    levels = np.array([k / bins for k in range(1, bins)], dtype=np.float64)
    if reference.size == 0 or len(levels) == 0:
        return np.empty(0, dtype=np.float64)
    # np.quantile's inverted_cdf index arithmetic, read off the sorted values (no partition)
    virtual = reference.size * levels - 1
    below = np.floor(virtual)
    index = np.where(virtual - below == 0, below, below + 1).astype(np.intp)
    index[index < 0] = 0
    return np.unique(reference.values[index])


def numeric_bin_counts(sample: NumericSample, edges: Sequence[float] | FloatArray) -> IntArray:
    """Counts in ``[-inf, e1), [e1, e2), …, [ek, +inf]`` (``profile.bin_counts`` on the sample)."""
    cuts = np.searchsorted(sample.values, np.asarray(edges, dtype=np.float64), side="left")
    counts = np.diff(cuts, prepend=0, append=sample.size).astype(np.int64)
    counts[0] += sample.neg_inf
    counts[-1] += sample.pos_inf
    return counts


def aligned_counts(
    reference: CategoricalSample, current: CategoricalSample
) -> tuple[tuple[str, ...], IntArray, IntArray]:
    """(categories, reference counts, current counts) over the union of both sides' categories:
    by reference count descending, then current count descending, then name."""
    names = set(reference.counts) | set(current.counts)
    ordered = sorted(
        names, key=lambda c: (-reference.counts.get(c, 0), -current.counts.get(c, 0), c)
    )
    ref = np.array([reference.counts.get(c, 0) for c in ordered], dtype=np.int64)
    cur = np.array([current.counts.get(c, 0) for c in ordered], dtype=np.int64)
    return tuple(ordered), ref, cur


# ---------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Histogram:
    """The bins a result was computed on, for charts.

    Numeric: ``edges`` (k finite edges) and k + 1 counts per side, bins
    ``[-inf, e1) … [ek, +inf]``. Categorical and boolean: ``categories`` (at most
    :data:`HISTOGRAM_MAX_CATEGORIES`, in :func:`aligned_counts` order) and ``len(categories) + 1``
    counts per side, the last one summing every category not listed (0 when all are).
    """

    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    reference: tuple[int, ...] = ()
    current: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "categories": list(self.categories),
            "reference": list(self.reference),
            "current": list(self.current),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(
            edges=tuple(float(e) for e in data.get("edges", ())),
            categories=tuple(str(c) for c in data.get("categories", ())),
            reference=tuple(int(c) for c in data.get("reference", ())),
            current=tuple(int(c) for c in data.get("current", ())),
        )


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """One column's drift result.

    ``statistic`` is the method's figure (D, normed W1, chi², JS distance or PSI);
    ``p_value`` is None for distances; ``drifted`` is ``p_value < threshold`` for tests and
    ``statistic >= threshold`` for distances; ``psi`` is always the PSI on the same bins;
    ``reference_count``/``current_count`` are the values the method saw (see the module
    docstring). ``statistic`` may be ``inf`` (``chisquare`` with unseen categories);
    :meth:`to_dict` writes non-finite numbers as the strings ``"inf"``/``"-inf"``/``"nan"``.
    """

    column: str
    kind: DriftKind
    method: Method
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    psi: float
    reference_count: int
    current_count: int
    histogram: Histogram = Histogram()

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "statistic": _json_float(self.statistic),
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "psi": _json_float(self.psi),
            "reference_count": self.reference_count,
            "current_count": self.current_count,
            "histogram": self.histogram.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnDrift:
        try:
            method = check_method(str(data["method"]))
            kind = str(data["kind"])
            if kind not in KINDS:
                raise InvalidInput(
                    f"drift kind {kind!r} is unknown; expected one of {', '.join(KINDS)}",
                    field="kind",
                )
            p_value = data["p_value"]
            return cls(
                column=str(data["column"]),
                kind=kind,
                method=method,
                statistic=float(data["statistic"]),
                p_value=None if p_value is None else float(p_value),
                threshold=float(data["threshold"]),
                drifted=bool(data["drifted"]),
                psi=float(data["psi"]),
                reference_count=int(data["reference_count"]),
                current_count=int(data["current_count"]),
                histogram=Histogram.from_dict(data.get("histogram", {})),
            )
        except KeyError as exc:
            raise InvalidInput(
                f"column drift result is missing the field {exc.args[0]!r}", field=exc.args[0]
            ) from exc


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


# ---------------------------------------------------------------- selection
def check_method(method: str) -> Method:
    if method not in METHODS:
        raise InvalidInput(
            f"drift method {method!r} is unknown; expected one of {', '.join(METHODS)}",
            field="method",
        )
    return method


def select_method(
    kind: DriftKind, reference_count: int, current_count: int, *, max_test_n: int = MAX_TEST_N
) -> Method:
    """The default method: a p-value test when the smaller side has ``<= max_test_n`` values
    (``ks`` numeric, ``chi2`` otherwise), a distance when both sides are larger
    (``wasserstein`` numeric, ``jensenshannon`` otherwise)."""
    small = min(reference_count, current_count) <= max_test_n
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chi2" if small else "jensenshannon"


def check_threshold(method: Method, threshold: float) -> float:
    """A threshold valid for the method: in (0, 1) for p-values, > 0 for distances."""
    value = float(threshold)
    if method in P_VALUE_METHODS and not 0.0 < value < 1.0:
        raise InvalidInput(
            f"the {method} threshold is a p-value level and must be in (0, 1), got {threshold}",
            field="threshold",
        )
    if not (math.isfinite(value) and value > 0.0):
        raise InvalidInput(
            f"the {method} threshold must be a finite number > 0, got {threshold}",
            field="threshold",
        )
    return value


def _verdict(
    column: str,
    kind: DriftKind,
    method: Method,
    statistic: float,
    p_value: float | None,
    limits: tuple[float | None, Mapping[Method, float] | None],
    psi_value: float,
    counts: tuple[int, int],
    histogram: Histogram,
) -> ColumnDrift:
    threshold, thresholds = limits
    if threshold is None:
        threshold = (thresholds or {}).get(method, DEFAULT_THRESHOLDS[method])
    limit = check_threshold(method, threshold)
    drifted = p_value < limit if p_value is not None else statistic >= limit
    return ColumnDrift(
        column=column,
        kind=kind,
        method=method,
        statistic=statistic,
        p_value=p_value,
        threshold=limit,
        drifted=bool(drifted),
        psi=psi_value,
        reference_count=counts[0],
        current_count=counts[1],
        histogram=histogram,
    )


def numeric_drift(
    column: str,
    reference: NumericSample,
    current: NumericSample,
    *,
    method: Method | None = None,
    threshold: float | None = None,
    thresholds: Mapping[Method, float] | None = None,
    bin_edges: Sequence[float] | FloatArray | None = None,
    max_test_n: int = MAX_TEST_N,
) -> ColumnDrift:
    """Drift of a numeric column. ``method`` defaults to :func:`select_method`; ``threshold``
    to ``thresholds[method]``, then :data:`DEFAULT_THRESHOLDS`; ``bin_edges`` to
    :func:`numeric_bin_edges` of the reference (pass the reference profile's to reuse them)."""
    if reference.binned_size == 0 or current.binned_size == 0:
        side = "reference" if reference.binned_size == 0 else "current"
        raise InvalidInput(f"column {column!r} has no values in the {side} data", field=column)
    chosen = method or select_method("numeric", reference.size, current.size, max_test_n=max_test_n)
    chosen = check_method(chosen)
    edges = np.asarray(
        numeric_bin_edges(reference) if bin_edges is None else bin_edges, dtype=np.float64
    )
    ref_bins = numeric_bin_counts(reference, edges)
    cur_bins = numeric_bin_counts(current, edges)
    p_value: float | None = None
    if chosen == "ks":
        statistic, p_value = ks_test(reference, current)
        counts = (reference.size, current.size)
    elif chosen == "wasserstein":
        statistic = normed_wasserstein(reference, current)
        counts = (reference.size, current.size)
    else:
        statistic, p_value = _binned(chosen, ref_bins, cur_bins)
        counts = (reference.binned_size, current.binned_size)
    histogram = Histogram(
        edges=tuple(float(e) for e in edges),
        reference=tuple(int(c) for c in ref_bins),
        current=tuple(int(c) for c in cur_bins),
    )
    return _verdict(
        column,
        "numeric",
        chosen,
        statistic,
        p_value,
        (threshold, thresholds),
        psi(ref_bins, cur_bins),
        counts,
        histogram,
    )


def categorical_drift(
    column: str,
    reference: CategoricalSample,
    current: CategoricalSample,
    *,
    kind: DriftKind = "categorical",
    method: Method | None = None,
    threshold: float | None = None,
    thresholds: Mapping[Method, float] | None = None,
    max_test_n: int = MAX_TEST_N,
) -> ColumnDrift:
    """Drift of a categorical or boolean column from its category counts; ``method`` and
    ``threshold`` default as in :func:`numeric_drift`."""
    if kind == "numeric":
        raise InvalidInput("categorical_drift is for categorical or boolean columns", field="kind")
    ref_n, cur_n = reference.size, current.size
    if ref_n == 0 or cur_n == 0:
        side = "reference" if ref_n == 0 else "current"
        raise InvalidInput(f"column {column!r} has no values in the {side} data", field=column)
    chosen = check_method(method or select_method(kind, ref_n, cur_n, max_test_n=max_test_n))
    if chosen not in CATEGORICAL_METHODS:
        raise InvalidInput(
            f"method {chosen!r} needs numeric values; column {column!r} is {kind}; "
            f"use one of {', '.join(sorted(CATEGORICAL_METHODS))}",
            field=column,
        )
    categories, ref_counts, cur_counts = aligned_counts(reference, current)
    statistic, p_value = _binned(chosen, ref_counts, cur_counts)
    shown = HISTOGRAM_MAX_CATEGORIES
    histogram = Histogram(
        categories=categories[:shown],
        reference=(*(int(c) for c in ref_counts[:shown]), int(ref_counts[shown:].sum())),
        current=(*(int(c) for c in cur_counts[:shown]), int(cur_counts[shown:].sum())),
    )
    return _verdict(
        column,
        kind,
        chosen,
        statistic,
        p_value,
        (threshold, thresholds),
        psi(ref_counts, cur_counts),
        (ref_n, cur_n),
        histogram,
    )


def _binned(method: Method, reference: IntArray, current: IntArray) -> tuple[float, float | None]:
    if method == "chi2":
        return chi2_contingency_test(reference, current)
    if method == "chisquare":
        return chisquare_test(reference, current)
    if method == "jensenshannon":
        return jensenshannon_distance(reference, current), None
    if method == "psi":
        return psi(reference, current), None
    raise InvalidInput(f"method {method!r} is not a binned method", field="method")


def drift_share(
    results: Sequence[ColumnDrift], threshold: float = DEFAULT_SHARE_THRESHOLD
) -> tuple[float, bool]:
    """(share of drifted columns, ``share >= threshold``); no columns gives (0.0, False)."""
    if not 0.0 < threshold <= 1.0:
        raise InvalidInput(
            f"the drift share threshold must be in (0, 1], got {threshold}",
            field="share_threshold",
        )
    if not results:
        return 0.0, False
    share = sum(r.drifted for r in results) / len(results)
    return share, share >= threshold
