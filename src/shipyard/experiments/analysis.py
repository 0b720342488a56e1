"""Experiment analysis from the event log: per-variant summaries, comparisons with the control,
the sample-ratio check and cumulative lift over time (shadow agreement: :mod:`.shadow`).

Everything starts from the window's records in the event log — the experiment's exposures
(``EXPOSURES``, partition = the experiment) and the deployment's outcomes (``OUTCOMES``,
partition = the deployment) with ``start <= time < end`` — and the statistics engine
(:mod:`shipyard.core.experiment_stats`, :mod:`~shipyard.core.confidence_sequences`,
:mod:`~shipyard.core.experiment_bayes`) does every test. Definitions:

- **Unit.** The analysis unit is an exposure's ``unit_key``, else its ``request_id`` (a request
  assigned at random is its own unit). A unit's variant is the variant of its first exposure in
  the window; a unit later seen in another variant (a canary ramp moves baseline units to the
  candidate) stays counted once, in its first variant, and the number of such *crossed* units
  is reported.
- **Outcomes.** De-duplicated by ``idempotency_key``: the latest record of a key (by ``time``)
  counts, the others are counted as duplicates and ignored; records without a key all count.
  An outcome is matched to an exposure by ``request_id``, else by ``unit_key``; one that matches
  no exposure of the window (its exposure is not logged yet, or fell before the window) is
  *unmatched*: counted and reported, never silently dropped — a later analysis may match it.
  Outcomes are read from the same window as exposures, so an outcome that arrives after
  ``end`` is not seen yet. ``metric`` null is the metric ``"label"``.
- **Outcome metrics** (kind ``"mean"``): a unit's value is the sum of its matched outcomes of
  that metric, 0 for a unit without any (a conversion rate or revenue per unit, GrowthBook's
  default); each variant is summarised as ``n`` (its units), ``Σy`` and ``Σy²``. The variance is
  the ``n − 1`` sample variance, so absolute lifts equal ``scipy.stats.ttest_ind(equal_var=False)``
  on the per-unit values (a 0/1 metric is not treated as a proportion: with ``p(1 − p)`` the two
  would differ by the factor ``n/(n − 1)``).
- **Guardrail metrics** from the exposures themselves, one value per *exposure* in the variant
  that served it: ``error_rate`` (``status >= 500`` → 1, else 0; kind ``"proportion"``),
  ``latency_ms`` (kind ``"mean"``; the p50 and p99 per variant are reported descriptively) and,
  when a guardrail or ``metrics`` names it, ``latency_p99``: whether the exposure was slower
  than the *control's* p99 latency in the same window (kind ``"proportion"``; about 1% for the
  control, so a candidate whose tail is worse shows as a higher share, which the guardrail rule
  can test — "the p99 must not get worse" becomes "no more requests beyond the control's p99
  than X more, relatively").
  These names are reserved: outcomes under them are not analysed. Per exposure, their
  intervals treat a unit's requests as independent, which is somewhat optimistic when units send
  many requests.
- **Comparisons**, each metric and each non-control variant against the control (the first
  variant: ``baseline`` for a canary, ``primary`` for a shadow, the spec's first variant for an
  A/B test or a bandit): the relative lift ``treatment mean / control mean − 1`` with its
  delta-method CI and Welch's p-value (:func:`~shipyard.core.experiment_stats.welch_ttest`), the
  chance to win ``Φ(lift / se)`` of the flat-prior normal model (for a metric where lower is
  better, ``1 −`` that), and with ``sequential=True`` the always-valid p-value and confidence
  sequence (:func:`~shipyard.core.confidence_sequences.sequential_test`), which then become the
  headline p-value and interval. Holm-adjusted p-values over all variants × metrics are reported
  beside them; the decision (``better``, ``worse``, ``inconclusive``) is the unadjusted one: the
  headline interval excludes 0, in the metric's better or worse direction (outcome metrics:
  higher is better unless the spec says otherwise; ``error_rate``/``latency_ms``: lower).
- **Sample-ratio mismatch** (:func:`~shipyard.core.experiment_stats.srm_check`) on units per
  variant against the configured weights: an A/B test's split (or ``weights``); a canary's
  current weights (``weights`` as the deployment holds them, else the current step's), counting
  only the units first exposed since the current step began, because earlier steps had other
  weights; bandits (the allocation moves with the outcomes) and shadows (no split) are not
  checked, and say so. A variant the spec does not name has weight 0 (any unit in it is a
  mismatch). A flagged check blocks every decision (they read ``inconclusive``).
- **Timeline**: at ``timeline_points`` evenly spaced times between the first exposure and the
  last record, the same comparison over everything logged before that time (cumulative). Without
  ``sequential`` the intervals are fixed-horizon ones, valid at each time alone, not across
  times.

Shadow deployments are compared by :func:`.shadow.compare_shadow` on their predictions instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.confidence_sequences import (
    DEFAULT_TUNING_N,
    SequentialComparison,
    sequential_test,
)
from shipyard.core.experiment_bayes import BayesianComparison, bayesian_test
from shipyard.core.experiment_stats import (
    DEFAULT_ALPHA,
    Comparison,
    MetricSummary,
    SrmCheck,
    adjust_p_values,
    check_alpha,
    srm_check,
    welch_ttest,
)
from shipyard.core.jsonable import jsonable
from shipyard.errors import InvalidInput
from shipyard.experiments.spec import ABTest, Bandit, Canary, Shadow, variants_of
from shipyard.experiments.store import Experiment
from shipyard.storage.events import EXPOSURES, OUTCOMES, EventLog

Decision = Literal["better", "worse", "inconclusive"]
ERROR_RATE = "error_rate"
LATENCY = "latency_ms"
LATENCY_TAIL = "latency_p99"
GUARDRAIL_METRICS = (ERROR_RATE, LATENCY, LATENCY_TAIL)
DEFAULT_METRIC = "label"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_NEVER = np.iinfo(np.int64).max
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Summaries:
    """Per-variant figures of one window (module docstring): ``exposures`` and ``units`` per
    variant, ``metrics[metric][variant]`` (``error_rate``, ``latency_ms`` and the outcome
    metrics), latency percentiles (None: no exposures), and the outcome bookkeeping."""

    variants: tuple[str, ...]
    exposures: dict[str, int]
    units: dict[str, int]
    metrics: dict[str, dict[str, MetricSummary[float]]]
    latency_p50: dict[str, float | None]
    latency_p99: dict[str, float | None]
    matched_outcomes: int
    unmatched_outcomes: int
    duplicate_outcomes: int
    crossed_units: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN and infinities as None)."""
        return jsonable(self)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric of one treatment variant against the control (module docstring).

    ``welch`` and ``bayes`` are always computed, ``sequential`` with ``sequential=True``; the
    headline ``p_value`` and interval come from ``sequential`` when present, else ``welch``.
    """

    metric: str
    variant: str
    higher_is_better: bool
    control: MetricSummary[float]
    treatment: MetricSummary[float]
    welch: Comparison[float]
    bayes: BayesianComparison[float]
    sequential: SequentialComparison[float] | None
    p_value_holm: float
    decision: Decision

    @property
    def lift(self) -> float:
        """The relative lift, ``treatment mean / control mean − 1``."""
        return self.welch.estimate

    @property
    def ci_low(self) -> float:
        return (self.sequential or self.welch).ci_low

    @property
    def ci_high(self) -> float:
        return (self.sequential or self.welch).ci_high

    @property
    def p_value(self) -> float:
        return (self.sequential or self.welch).p_value

    @property
    def chance_to_win(self) -> float:
        """P(the treatment is better), in the metric's better direction."""
        chance = self.bayes.chance_to_win
        return chance if self.higher_is_better else 1.0 - chance


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """The cumulative comparison over everything logged before ``time``."""

    time: datetime
    control_n: float
    treatment_n: float
    lift: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, slots=True)
class SrmResult:
    """The sample-ratio check (``check`` None: not checked; ``note`` says why, or what was
    compared with what)."""

    variants: tuple[str, ...]
    check: SrmCheck | None
    note: str

    @property
    def flagged(self) -> bool:
        return self.check is not None and self.check.flagged


@dataclass(frozen=True, slots=True)
class ExperimentAnalysis:
    """An experiment's analysis over ``[start, end)``: :func:`analyze`."""

    experiment: str
    deployment: str
    strategy: str
    status: str
    start: datetime
    end: datetime
    control: str
    variants: tuple[str, ...]
    alpha: float
    sequential: bool
    tuning_n: float
    summaries: Summaries
    results: tuple[MetricResult, ...]
    srm: SrmResult
    timeline: dict[str, dict[str, tuple[TimelinePoint, ...]]]

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.summaries.metrics)

    @property
    def unmatched_outcomes(self) -> int:
        return self.summaries.unmatched_outcomes

    @property
    def duplicate_outcomes(self) -> int:
        return self.summaries.duplicate_outcomes

    @property
    def crossed_units(self) -> int:
        return self.summaries.crossed_units

    def higher_is_better(self, metric: str) -> bool:
        return next(
            (r.higher_is_better for r in self.results if r.metric == metric),
            metric not in GUARDRAIL_METRICS,
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric and variant, the control first (its lift, interval, p-values,
        chance to win and decision are None): ``metric``, ``variant``, ``n``, ``mean``,
        ``lift``, ``ci_low``, ``ci_high``, ``p_value``, ``p_value_holm``, ``chance_to_win``,
        ``decision``; NaN and infinities as None."""
        results = {(r.metric, r.variant): r for r in self.results}
        rows = []
        for metric, by_variant in self.summaries.metrics.items():
            for variant, summary in by_variant.items():
                result = results.get((metric, variant))
                row: dict[str, Any] = {
                    "metric": metric,
                    "variant": variant,
                    "n": int(summary.n),
                    "mean": summary.mean,
                    "lift": None,
                    "ci_low": None,
                    "ci_high": None,
                    "p_value": None,
                    "p_value_holm": None,
                    "chance_to_win": None,
                    "decision": None,
                }
                if result is not None:
                    row |= {
                        "lift": result.lift,
                        "ci_low": result.ci_low,
                        "ci_high": result.ci_high,
                        "p_value": result.p_value,
                        "p_value_holm": result.p_value_holm,
                        "chance_to_win": result.chance_to_win,
                        "decision": result.decision,
                    }
                rows.append(jsonable(row))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able: numbers as int/float (NaN and infinities as None), times as
        ISO 8601 strings."""
        metrics = []
        for metric, by_variant in self.summaries.metrics.items():
            metrics.append(
                {
                    "metric": metric,
                    "higher_is_better": self.higher_is_better(metric),
                    "variants": {
                        v: {"n": s.n, "mean": s.mean, "sum": s.sum, "sum_squares": s.sum_squares}
                        for v, s in by_variant.items()
                    },
                    "comparisons": [
                        {
                            "variant": r.variant,
                            "lift": r.lift,
                            "ci_low": r.ci_low,
                            "ci_high": r.ci_high,
                            "p_value": r.p_value,
                            "p_value_holm": r.p_value_holm,
                            "chance_to_win": r.chance_to_win,
                            "decision": r.decision,
                            "welch": r.welch,
                            "bayesian": r.bayes,
                            "sequential": r.sequential,
                        }
                        for r in self.results
                        if r.metric == metric
                    ],
                }
            )
        summaries = self.summaries
        return jsonable(  # type: ignore[no-any-return]
            {
                "experiment": self.experiment,
                "deployment": self.deployment,
                "strategy": self.strategy,
                "status": self.status,
                "start": self.start,
                "end": self.end,
                "control": self.control,
                "variants": self.variants,
                "alpha": self.alpha,
                "sequential": self.sequential,
                "tuning_n": self.tuning_n if self.sequential else None,
                "exposures": summaries.exposures,
                "units": summaries.units,
                "latency": {
                    v: {"p50": summaries.latency_p50[v], "p99": summaries.latency_p99[v]}
                    for v in self.variants
                },
                "matched_outcomes": summaries.matched_outcomes,
                "unmatched_outcomes": summaries.unmatched_outcomes,
                "duplicate_outcomes": summaries.duplicate_outcomes,
                "crossed_units": summaries.crossed_units,
                "srm": {
                    "checked": self.srm.check is not None,
                    "flagged": self.srm.flagged,
                    "note": self.srm.note,
                    "check": self.srm.check,
                },
                "decisions_blocked_by_srm": self.srm.flagged,
                "metrics": metrics,
                "timeline": self.timeline,
            }
        )


# ---------------------------------------------------------------- API
def summaries(
    events: EventLog,
    experiment: Experiment,
    *,
    start: datetime,
    end: datetime,
    metrics: Sequence[str] = (),
    revision: int | None = None,
) -> Summaries:
    """Per-variant summaries of the window ``[start, end)`` (module docstring): the guardrail
    metrics always, and the outcome metrics ``metrics`` (default: every metric name seen in the
    window's outcomes). ``revision``: only the exposures assigned under that deployment revision
    (one split of a canary step: replicas apply a new split a moment after it is written, and
    the requests they assign meanwhile under the old one would read as a sample-ratio
    mismatch)."""
    window = _load(events, experiment, start, end, revision)
    return _summarise(window, _metric_names(window, metrics), _NEVER, LATENCY_TAIL in metrics)


def analyze(
    events: EventLog,
    experiment: Experiment,
    *,
    end: datetime | None = None,
    weights: Sequence[float] | None = None,
    sequential: bool = False,
    alpha: float = DEFAULT_ALPHA,
    timeline_points: int = 20,
    tuning_n: float = DEFAULT_TUNING_N,
) -> ExperimentAnalysis:
    """Analyse the experiment from its start (else its creation) to ``end`` (default: now).

    ``weights``: the split to check for sample-ratio mismatch, one per configured variant
    (default: the spec's, or a canary's current step). ``tuning_n``: the sequential test's
    planned total of units (:mod:`shipyard.core.confidence_sequences`).
    """
    check_alpha(alpha)
    if timeline_points < 1:
        raise InvalidInput(
            f"timeline_points must be at least 1, got {timeline_points}", field="timeline_points"
        )
    start = experiment.started_at or experiment.created_at
    end = end if end is not None else datetime.now(UTC)
    window = _load(events, experiment, start, end)
    strategy = experiment.strategy
    names = _metric_names(window, _named_metrics(strategy), add_seen=True)
    tail = LATENCY_TAIL in _named_metrics(strategy)
    figures = _summarise(window, names, _NEVER, tail)
    directions = _directions(experiment, figures.metrics)
    srm = _srm(window, experiment, weights, start, figures)
    results = _compare(figures, directions, alpha, sequential, tuning_n, srm.flagged)
    timeline = _timeline(window, names, tail, timeline_points, alpha, sequential, tuning_n)
    return ExperimentAnalysis(
        experiment=experiment.name,
        deployment=experiment.deployment,
        strategy=strategy.type,
        status=experiment.status,
        start=start,
        end=end,
        control=window.variants[0],
        variants=window.variants,
        alpha=alpha,
        sequential=sequential,
        tuning_n=float(tuning_n),
        summaries=figures,
        results=results,
        srm=srm,
        timeline=timeline,
    )


# ---------------------------------------------------------------- the window as arrays
@dataclass(frozen=True, slots=True)
class _Window:
    """A window's exposures (in time order), units and outcomes (by idempotency key, then
    time) as arrays of codes; times in microseconds since the epoch."""

    variants: tuple[str, ...]
    time: IntArray
    variant: IntArray
    unit: IntArray
    error: FloatArray
    latency: FloatArray
    first_time: IntArray  # per unit: its first exposure
    unit_variant: IntArray  # per unit: the variant of its first exposure
    crossed_time: IntArray  # per unit: its first exposure in another variant (_NEVER: none)
    outcome_time: IntArray
    outcome_unit: IntArray  # -1: no exposure of the window matches
    outcome_metric: IntArray  # index into outcome_metrics
    outcome_value: FloatArray
    outcome_key: IntArray  # idempotency key code, -1: none
    outcome_metrics: tuple[str, ...]


def _load(
    events: EventLog,
    experiment: Experiment,
    start: datetime,
    end: datetime,
    revision: int | None = None,
) -> _Window:
    exposures = events.read(EXPOSURES, experiment.name, start, end)
    if revision is not None:
        exposures = exposures.filter(pc.equal(exposures.column("revision"), revision))
    outcomes = events.read(OUTCOMES, experiment.deployment, start, end)
    configured = [v.name for v in variants_of(experiment.strategy)]
    return _window(exposures, outcomes, configured)


def _window(exposures: pa.Table, outcomes: pa.Table, configured: Sequence[str]) -> _Window:
    time = _micros(exposures)
    order = np.argsort(time, kind="stable")
    time = time[order]
    name_code, names = pd.factorize(strings(exposures, "variant")[order])
    variants = (*configured, *sorted({str(v) for v in names} - set(configured)))
    variant = _positions(variants, np.asarray(names, dtype=object))[name_code]
    request_code, outcome_request = _codes(
        strings(exposures, "request_id")[order], strings(outcomes, "request_id")
    )
    key_code, outcome_key = _codes(
        strings(exposures, "unit_key")[order], strings(outcomes, "unit_key")
    )
    keyed = key_code >= 0
    raw = np.where(keyed, key_code, key_code.max(initial=-1) + 1 + request_code)
    _, first, unit = np.unique(raw, return_index=True, return_inverse=True)
    unit = unit.astype(np.int64)
    unit_variant = variant[first]
    crossed_time = np.full(first.size, _NEVER, dtype=np.int64)
    other = variant != unit_variant[unit]
    np.minimum.at(crossed_time, unit[other], time[other])

    # an outcome's unit: the unit of the first exposure of its request, else of its unit key
    _, request_first = np.unique(request_code, return_index=True)
    _, key_first = np.unique(key_code[keyed], return_index=True)
    by_request = _lookup(unit[request_first], outcome_request)
    by_key = _lookup(unit[keyed][key_first], outcome_key)
    outcome_unit = np.where(by_request >= 0, by_request, by_key)
    metric_names = strings(outcomes, "metric")
    metric_names[pd.isna(metric_names)] = DEFAULT_METRIC
    metric_code, metric_values = pd.factorize(metric_names)
    idempotency, _ = pd.factorize(strings(outcomes, "idempotency_key"))
    outcome_time = _micros(outcomes)
    by_key_then_time = np.lexsort((outcome_time, idempotency))
    status = exposures.column("status").to_numpy()[order]
    return _Window(
        variants=variants,
        time=time,
        variant=variant,
        unit=unit,
        error=(status >= 500).astype(np.float64),
        latency=exposures.column("latency_ms").to_numpy()[order].astype(np.float64),
        first_time=time[first],
        unit_variant=unit_variant,
        crossed_time=crossed_time,
        outcome_time=outcome_time[by_key_then_time],
        outcome_unit=outcome_unit[by_key_then_time],
        outcome_metric=metric_code[by_key_then_time].astype(np.int64),
        outcome_value=outcomes.column("label").to_numpy()[by_key_then_time].astype(np.float64),
        outcome_key=idempotency[by_key_then_time].astype(np.int64),
        outcome_metrics=tuple(str(m) for m in metric_values),
    )


def _micros(table: pa.Table) -> IntArray:
    return np.asarray(table.column("time").cast(pa.int64()).to_numpy(), dtype=np.int64)


def strings(table: pa.Table, name: str) -> npt.NDArray[np.object_]:
    """A string column as an object array (None for null)."""
    return np.asarray(table.column(name).to_numpy(), dtype=object)


def _positions(values: Sequence[Any] | npt.NDArray[Any], lookups: npt.NDArray[Any]) -> IntArray:
    """Where each of ``lookups`` is in the distinct ``values`` (-1: nowhere, or null)."""
    return np.asarray(pd.Index(values).get_indexer(pd.Index(lookups)), dtype=np.int64)


def _codes(known: npt.NDArray[Any], lookups: npt.NDArray[Any]) -> tuple[IntArray, IntArray]:
    """``known``'s values as codes ``0 … m − 1`` in order of appearance (-1: null), and the code
    of each of ``lookups`` among them (-1: not among them, or null), in one hashing pass."""
    codes, _ = pd.factorize(np.concatenate([known, lookups]))
    codes = codes.astype(np.int64)
    own, looked_up = codes[: known.size], codes[known.size :]
    looked_up[looked_up > own.max(initial=-1)] = -1
    return own, looked_up


def _lookup(values: IntArray, index: IntArray) -> IntArray:
    """``values[index]``, -1 where ``index`` is -1."""
    found = np.full(index.size, -1, dtype=np.int64)
    hit = index >= 0
    found[hit] = values[index[hit]]
    return found


def _metric_names(window: _Window, metrics: Sequence[str], *, add_seen: bool = False) -> list[str]:
    """Outcome metrics to summarise: ``metrics`` (and, with ``add_seen`` or when it is empty,
    every name seen), without repeats or the reserved guardrail names."""
    names = list(metrics)
    if add_seen or not names:
        names += sorted(window.outcome_metrics)
    unique = dict.fromkeys(n for n in names if n not in GUARDRAIL_METRICS)
    return list(unique)


def _named_metrics(strategy: Canary | Shadow | ABTest | Bandit) -> list[str]:
    """The outcome metrics the spec names (its primary metric, its guardrails)."""
    match strategy:
        case Canary():
            named = [strategy.metric, *(g.metric for g in strategy.guardrails)]
            return [m for m in named if m is not None]
        case ABTest():
            return [] if strategy.metric is None else [strategy.metric]
        case Bandit():
            return [strategy.metric]
        case Shadow():
            return []


# ---------------------------------------------------------------- summaries
def _counted_outcomes(window: _Window, cut: int) -> tuple[BoolArray, int]:
    """The outcomes recorded before ``cut`` that count (the latest per idempotency key, every
    one without a key) and the number of duplicates ignored."""
    seen = window.outcome_time < cut
    keyed = window.outcome_key >= 0
    rows = np.flatnonzero(seen & keyed)
    keys = window.outcome_key[rows]
    latest = np.ones(rows.size, dtype=bool)
    latest[:-1] = keys[:-1] != keys[1:]  # sorted by key, then time: the last of a run counts
    counted = seen & ~keyed
    counted[rows[latest]] = True
    return counted, int(rows.size - latest.sum())


def _matched(window: _Window, counted: BoolArray, cut: int) -> BoolArray:
    """The counted outcomes whose unit was exposed before ``cut``."""
    unit = window.outcome_unit
    matched = counted & (unit >= 0)
    matched[matched] = window.first_time[unit[matched]] < cut
    return matched


def _summarise(window: _Window, metrics: Sequence[str], cut: int, tail: bool) -> Summaries:
    k = len(window.variants)
    exposed = window.time < cut
    alive = window.first_time < cut
    counted, duplicates = _counted_outcomes(window, cut)
    matched = _matched(window, counted, cut)
    latency = {
        v: window.latency[exposed & (window.variant == i)] for i, v in enumerate(window.variants)
    }
    return Summaries(
        variants=window.variants,
        exposures=_per_variant(window, np.bincount(window.variant[exposed], minlength=k)),
        units=_per_variant(window, np.bincount(window.unit_variant[alive], minlength=k)),
        metrics=_metric_summaries(window, metrics, exposed, alive, matched, tail),
        latency_p50={v: _percentile(x, 50) for v, x in latency.items()},
        latency_p99={v: _percentile(x, 99) for v, x in latency.items()},
        matched_outcomes=int(matched.sum()),
        unmatched_outcomes=int(counted.sum() - matched.sum()),
        duplicate_outcomes=duplicates,
        crossed_units=int(np.count_nonzero(window.crossed_time < cut)),
    )


def _metric_summaries(
    window: _Window,
    metrics: Sequence[str],
    exposed: BoolArray,
    alive: BoolArray,
    matched: BoolArray,
    tail: bool,
) -> dict[str, dict[str, MetricSummary[float]]]:
    """Per metric and variant; ``tail``: also ``latency_p99`` (only when asked for, since it
    needs the control's percentile)."""
    k = len(window.variants)
    found: dict[str, dict[str, MetricSummary[float]]] = {}
    unit_variant = window.unit_variant[alive]
    n_units = np.bincount(unit_variant, minlength=k)
    for metric in metrics:
        code = window.outcome_metrics.index(metric) if metric in window.outcome_metrics else -1
        rows = matched & (window.outcome_metric == code)
        per_unit = np.bincount(
            window.outcome_unit[rows], window.outcome_value[rows], minlength=alive.size
        )[alive]
        sums = np.bincount(unit_variant, per_unit, minlength=k)
        squares = np.bincount(unit_variant, per_unit**2, minlength=k)
        found[metric] = {
            v: MetricSummary(float(n_units[i]), float(sums[i]), float(squares[i]), "mean")
            for i, v in enumerate(window.variants)
        }
    variant = window.variant[exposed]
    n_exposures = np.bincount(variant, minlength=k)
    errors = np.bincount(variant, window.error[exposed], minlength=k)
    latency = window.latency[exposed]
    latency_sums = np.bincount(variant, latency, minlength=k)
    latency_squares = np.bincount(variant, latency**2, minlength=k)
    found[ERROR_RATE] = {
        v: MetricSummary.proportion(float(n_exposures[i]), float(errors[i]))
        for i, v in enumerate(window.variants)
    }
    found[LATENCY] = {
        v: MetricSummary(
            float(n_exposures[i]), float(latency_sums[i]), float(latency_squares[i]), "mean"
        )
        for i, v in enumerate(window.variants)
    }
    if tail:
        control = latency[variant == 0]
        beyond = latency > (np.percentile(control, 99) if control.size else np.inf)
        slow = np.bincount(variant, beyond, minlength=k)
        found[LATENCY_TAIL] = {
            v: MetricSummary.proportion(float(n_exposures[i]), float(slow[i]))
            for i, v in enumerate(window.variants)
        }
    return found


def _per_variant(window: _Window, counts: npt.NDArray[np.int64]) -> dict[str, int]:
    return {v: int(counts[i]) for i, v in enumerate(window.variants)}


def _percentile(values: FloatArray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


# ---------------------------------------------------------------- comparisons
def _directions(
    experiment: Experiment, metrics: dict[str, dict[str, MetricSummary[float]]]
) -> dict[str, bool]:
    """Whether higher is better, per metric: the spec's word where it has one."""
    higher = {m: m not in GUARDRAIL_METRICS for m in metrics}
    strategy = experiment.strategy
    if isinstance(strategy, Canary):
        higher |= {g.metric: g.higher_is_better for g in strategy.guardrails}
    if isinstance(strategy, Canary | ABTest) and strategy.metric is not None:
        higher[strategy.metric] = strategy.higher_is_better
    return {m: higher[m] for m in metrics}


def _compare(
    figures: Summaries,
    directions: dict[str, bool],
    alpha: float,
    sequential: bool,
    tuning_n: float,
    blocked: bool,
) -> tuple[MetricResult, ...]:
    control = figures.variants[0]
    results = []
    for metric, by_variant in figures.metrics.items():
        for variant in figures.variants[1:]:
            c, t = by_variant[control], by_variant[variant]
            welch = welch_ttest(c, t, alpha=alpha)
            seq = sequential_test(c, t, alpha=alpha, tuning_n=tuning_n) if sequential else None
            headline = seq or welch
            results.append(
                MetricResult(
                    metric=metric,
                    variant=variant,
                    higher_is_better=directions[metric],
                    control=c,
                    treatment=t,
                    welch=welch,
                    bayes=bayesian_test(c, t, alpha=alpha),
                    sequential=seq,
                    p_value_holm=math.nan,
                    decision=_decide(
                        headline.ci_low, headline.ci_high, directions[metric], blocked
                    ),
                )
            )
    p = np.array([r.p_value for r in results], dtype=np.float64)
    holm = np.full(p.size, math.nan)
    finite = np.isfinite(p)
    if finite.any():
        holm[finite] = adjust_p_values(p[finite], method="holm")
    return tuple(
        dataclasses.replace(r, p_value_holm=float(h)) for r, h in zip(results, holm, strict=True)
    )


def _decide(low: float, high: float, higher_is_better: bool, blocked: bool) -> Decision:
    """``better``/``worse`` when the interval excludes 0 (NaN: it does not)."""
    if blocked or not (low > 0 or high < 0):
        return "inconclusive"
    return "better" if (low > 0) == higher_is_better else "worse"


def _srm(
    window: _Window,
    experiment: Experiment,
    weights: Sequence[float] | None,
    start: datetime,
    figures: Summaries,
) -> SrmResult:
    strategy = experiment.strategy
    variants = window.variants
    configured = len(variants_of(strategy))
    if isinstance(strategy, Bandit):
        return SrmResult(variants, None, "not checked: a bandit's split follows its outcomes")
    if isinstance(strategy, Shadow):
        return SrmResult(variants, None, "not checked: a shadow deployment has no traffic split")
    counts = [figures.units[v] for v in variants]
    note = "units over the whole window"
    if isinstance(strategy, Canary):
        if weights is None:
            steps, step = strategy.schedule, experiment.step
            weight = steps[step].weight if steps and 0 <= step < len(steps) else strategy.weight
            weights = (1.0 - weight, weight)
        since = experiment.step_started_at
        if since is not None and start < since:
            counts = _units_since(window, (since - _EPOCH) // timedelta(microseconds=1))
            note = f"units first exposed since the current step began ({since.isoformat()})"
    elif isinstance(strategy, ABTest) and weights is None:
        weights = strategy.split
    assert weights is not None
    if len(weights) != configured:
        raise InvalidInput(
            f"weights has {len(weights)} values for {configured} variants "
            f"({', '.join(variants[:configured])})",
            field="weights",
        )
    split = [*weights, *[0.0] * (len(variants) - configured)]  # unknown variants: weight 0
    return SrmResult(variants, srm_check(counts, split), note)


def _units_since(window: _Window, cut: int) -> list[int]:
    """Units per variant counted by their first exposure at or after ``cut``."""
    late = window.time >= cut
    _, first = np.unique(window.unit[late], return_index=True)
    counts = np.bincount(window.variant[late][first], minlength=len(window.variants))
    return [int(c) for c in counts]


# ---------------------------------------------------------------- timeline
def _timeline(
    window: _Window,
    metrics: Sequence[str],
    tail: bool,
    points: int,
    alpha: float,
    sequential: bool,
    tuning_n: float,
) -> dict[str, dict[str, tuple[TimelinePoint, ...]]]:
    if window.time.size == 0:
        return {}
    first = int(window.time[0])
    last = int(max(window.time[-1], window.outcome_time.max(initial=first))) + 1
    cuts = [first + round((last - first) * (i + 1) / points) for i in range(points)]
    looks = [
        _metric_summaries(
            window,
            metrics,
            window.time < cut,
            window.first_time < cut,
            _matched(window, _counted_outcomes(window, cut)[0], cut),
            tail,
        )
        for cut in cuts
    ]
    times = [_EPOCH + timedelta(microseconds=c) for c in cuts]
    control = window.variants[0]
    timeline: dict[str, dict[str, tuple[TimelinePoint, ...]]] = {}
    for metric in looks[0]:
        kind = looks[0][metric][control].kind
        timeline[metric] = {}
        for variant in window.variants[1:]:
            c, t = (_stacked([look[metric][v] for look in looks], kind) for v in (control, variant))
            test = (
                sequential_test(c, t, alpha=alpha, tuning_n=tuning_n)
                if sequential
                else welch_ttest(c, t, alpha=alpha)
            )
            timeline[metric][variant] = tuple(
                TimelinePoint(
                    times[i],
                    float(c.n[i]),
                    float(t.n[i]),
                    float(test.estimate[i]),
                    float(test.ci_low[i]),
                    float(test.ci_high[i]),
                )
                for i in range(points)
            )
    return timeline


def _stacked(
    looks: Sequence[MetricSummary[float]], kind: Literal["mean", "proportion"]
) -> MetricSummary[FloatArray]:
    return MetricSummary(
        np.array([s.n for s in looks]),
        np.array([s.sum for s in looks]),
        np.array([s.sum_squares for s in looks]),
        kind,
    )
