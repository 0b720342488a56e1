"""Guardrails and the decision rule of a canary step: promote, continue, roll back or hold.

A :class:`Guardrail` says "metric M must not get worse by more than X (relative)": the direction
in which M is better (``"higher"`` or ``"lower"``) and ``max_relative_worsening`` X (``0.05``
allows a 5% worsening). It is **breached** when the always-valid confidence sequence of the
relative change ``R = candidate mean / control mean − 1`` (Fieller's, from
:func:`~shipyard.core.confidence_sequences.sequential_test`, two-sided, level ``1 − alpha``) lies
entirely beyond X on the bad side: above ``+X`` for a lower-is-better metric, below ``−X`` for a
higher-is-better one. The rule is computed as the equivalent linear test, which needs no
division by the control's mean (so it also works when that mean is 0): the *excess* of the
candidate over the allowed level::

    lower is better:   E = m_t − (1 + X)·m_c        higher is better:   E = (1 − X)·m_c − m_t
    s² = V_t + k²·V_c   (k = 1 + X or 1 − X)         CS of E: E ± c·s   (c from the same boundary)
    breached  ⇔  E − c·s > 0   (the whole CS of the excess is on the bad side of 0)

For a control mean above 0 and a bounded relative CS this is exactly "the relative CS lies beyond
X". Because the CS holds at every look at once, a candidate that is no worse than allowed is
rolled back with probability at most ``alpha`` however often the rule is checked (seeded
simulations in ``tests/test_rollout_rules.py``). The CS is asymptotic, and with a handful of
units a rate's plug-in variance ``p(1 − p)`` is often 0 in both arms (1 unit each, one error in
the candidate: a "certain" breach), so a check is *evaluable* only from :data:`MIN_UNITS` units
per arm (and when its CS is defined): looked at from the first unit on, A/A experiments at a 50%
rate were rolled back 25% of the time without this floor, under 1% with it.

:func:`decide_step`, in order of precedence:

1. ``hold_for_srm`` — the sample-ratio-mismatch check is flagged: the data cannot be trusted, no
   decision is taken (the step stays where it is and a human must look);
2. ``rollback`` — a guardrail is breached, or the primary metric (if any; a check normally made
   with ``max_relative_worsening = 0``) is significantly worse;
3. ``continue`` — the step's minimum exposures/time are not met, or some check is not evaluable
   yet;
4. ``promote`` — otherwise: move to the next step, or, at the last step, complete the rollout.
   The primary metric need not be significantly better.

Guardrails are checked at every look, before the minimum is met: an early breach rolls back at
once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, overload

import numpy as np
import numpy.typing as npt

from shipyard.core.confidence_sequences import (
    DEFAULT_TUNING_N,
    SequentialComparison,
    boundary,
    sequential_test,
)
from shipyard.core.experiment_stats import (
    DEFAULT_ALPHA,
    F,
    FloatArray,
    MetricSummary,
    SrmCheck,
    as_float64,
    shaped_like,
)
from shipyard.core.jsonable import jsonable
from shipyard.errors import InvalidInput

Better = Literal["higher", "lower"]
Action = Literal["promote", "continue", "rollback", "hold_for_srm"]
BETTER: tuple[Better, ...] = get_args(Better)
ACTIONS: tuple[Action, ...] = get_args(Action)
BoolArray = npt.NDArray[np.bool_]
MIN_UNITS = 30


@dataclass(frozen=True, slots=True)
class Guardrail:
    """``metric`` must not get worse by more than ``max_relative_worsening`` (a fraction of the
    control's mean); ``better`` is the direction in which the metric improves."""

    metric: str
    better: Better
    max_relative_worsening: float = 0.0

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise InvalidInput(
                f"guardrail {self.metric!r}: better must be 'higher' or 'lower', got "
                f"{self.better!r}",
                field="better",
            )
        if not (self.max_relative_worsening >= 0 and math.isfinite(self.max_relative_worsening)):
            raise InvalidInput(
                f"guardrail {self.metric!r}: max_relative_worsening must be a finite fraction "
                f">= 0, got {self.max_relative_worsening}",
                field="max_relative_worsening",
            )


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One guardrail at one look: the relative change's confidence sequence (for people), the
    excess over the allowed level and its CS (for the rule), and the verdict (module
    docstring)."""

    guardrail: Guardrail
    relative: SequentialComparison[float]
    excess: float
    excess_ci_low: float
    excess_ci_high: float
    evaluable: bool
    breached: bool


def excess_interval(
    guardrail: Guardrail,
    control: MetricSummary[F],
    treatment: MetricSummary[F],
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning_n: float = DEFAULT_TUNING_N,
) -> tuple[F, F, F]:
    """``(E, low, high)``: the candidate's excess over the allowed level of the metric and its
    always-valid confidence sequence (module docstring); the CS is NaN when undefined or with
    fewer than :data:`MIN_UNITS` units in an arm."""
    n_c, n_t = as_float64(control.n), as_float64(treatment.n)
    c = boundary(n_c + n_t, alpha=alpha, tuning_n=tuning_n)
    x = guardrail.max_relative_worsening
    scale = 1.0 + x if guardrail.better == "lower" else 1.0 - x
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = treatment.mean - scale * control.mean
        if guardrail.better == "higher":
            excess = -excess
        half = c * np.sqrt(treatment.variance / n_t + scale**2 * control.variance / n_c)
    too_few = np.minimum(n_c, n_t) < MIN_UNITS
    low = shaped_like(np.where(too_few, np.nan, excess - half), excess)
    high = shaped_like(np.where(too_few, np.nan, excess + half), excess)
    return excess, low, high


@overload
def guardrail_breached(
    guardrail: Guardrail,
    control: MetricSummary[float],
    treatment: MetricSummary[float],
    *,
    alpha: float = ...,
    tuning_n: float = ...,
) -> bool: ...
@overload
def guardrail_breached(
    guardrail: Guardrail,
    control: MetricSummary[FloatArray],
    treatment: MetricSummary[FloatArray],
    *,
    alpha: float = ...,
    tuning_n: float = ...,
) -> BoolArray: ...
def guardrail_breached(
    guardrail: Guardrail,
    control: MetricSummary[Any],
    treatment: MetricSummary[Any],
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning_n: float = DEFAULT_TUNING_N,
) -> bool | BoolArray:
    """The rule itself: the excess's CS lies entirely above 0. Elementwise for summaries of
    arrays (one element per simulated experiment); NaN (undefined) is not a breach."""
    _, low, _ = excess_interval(guardrail, control, treatment, alpha=alpha, tuning_n=tuning_n)
    breached = np.asarray(low) > 0
    return bool(breached) if breached.ndim == 0 else breached


def check_guardrail(
    guardrail: Guardrail,
    control: MetricSummary[float],
    treatment: MetricSummary[float],
    *,
    alpha: float = DEFAULT_ALPHA,
    tuning_n: float = DEFAULT_TUNING_N,
) -> GuardrailCheck:
    """Check one guardrail on the control's and the candidate's summaries of its metric."""
    relative = sequential_test(control, treatment, alpha=alpha, tuning_n=tuning_n)
    excess, low, high = excess_interval(
        guardrail, control, treatment, alpha=alpha, tuning_n=tuning_n
    )
    breached = guardrail_breached(guardrail, control, treatment, alpha=alpha, tuning_n=tuning_n)
    return GuardrailCheck(
        guardrail=guardrail,
        relative=relative,
        excess=float(excess),
        excess_ci_low=float(low),
        excess_ci_high=float(high),
        evaluable=not math.isnan(low),
        breached=breached,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """A step's decision, the reasons for it and every number it used."""

    action: Action
    reasons: tuple[str, ...]
    minimum_met: bool
    srm: SrmCheck
    guardrails: tuple[GuardrailCheck, ...]
    primary: GuardrailCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: nested dicts and lists of str, bool, int, float and None (a NaN or
        infinite number becomes None)."""
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "minimum_met": self.minimum_met,
            "srm": jsonable(self.srm),
            "guardrails": [jsonable(check) for check in self.guardrails],
            "primary": None if self.primary is None else jsonable(self.primary),
        }


def decide_step(
    guardrails: Sequence[GuardrailCheck],
    *,
    srm: SrmCheck,
    minimum_met: bool,
    primary: GuardrailCheck | None = None,
) -> Decision:
    """The canary step's decision by the rule in the module docstring."""
    checks = tuple(guardrails)
    breaches = [f"guardrail {_describe(check)}" for check in checks if check.breached]
    if primary is not None and primary.breached:
        breaches.append(f"primary metric {_describe(primary)}")
    if srm.flagged:
        reason = (
            f"sample ratio mismatch: counts {list(srm.counts)} against weights "
            f"{list(srm.weights)}, p = {srm.p_value:.3g} < {srm.threshold:g}"
        )
        return Decision("hold_for_srm", (reason, *breaches), minimum_met, srm, checks, primary)
    if breaches:
        return Decision("rollback", tuple(breaches), minimum_met, srm, checks, primary)
    waiting = [] if minimum_met else ["the step's minimum exposures/time are not met yet"]
    for check in (*checks, *([] if primary is None else [primary])):
        if not check.evaluable:
            waiting.append(
                f"{check.guardrail.metric!r} cannot be evaluated yet (n = "
                f"{check.relative.control_n:g} control, {check.relative.treatment_n:g} candidate)"
            )
    if waiting:
        return Decision("continue", tuple(waiting), minimum_met, srm, checks, primary)
    reasons = ["no guardrail breached and the step's minimum is met"]
    if primary is not None:
        reasons.append(f"primary metric {_describe(primary)}")
    return Decision("promote", tuple(reasons), minimum_met, srm, checks, primary)


def _describe(check: GuardrailCheck) -> str:
    rel, rule = check.relative, check.guardrail
    return (
        f"{rule.metric!r} ({rule.better} is better, allowed worsening "
        f"{rule.max_relative_worsening:.4g}): relative change {rel.estimate:+.4g}, "
        f"{1 - rel.alpha:.0%} confidence sequence [{rel.ci_low:+.4g}, {rel.ci_high:+.4g}]; "
        f"excess over the allowed level {check.excess:+.4g} "
        f"[{check.excess_ci_low:+.4g}, {check.excess_ci_high:+.4g}]"
    )
