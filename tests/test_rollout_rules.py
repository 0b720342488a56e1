"""Guardrails and canary step decisions (shipyard.core.rollout_rules).

The rule is checked three ways: against its formula, against its meaning (the relative change's
Fieller confidence sequence lies beyond the allowed worsening), and by seeded simulation: on A/A
data checked at each of 20 looks the false-rollback rate stays at most alpha (the count of
rollbacks below the 99% quantile of Binomial(S, alpha)), also at small counts where a
delta-method interval would fail, and a clearly worse candidate is rolled back.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from shipyard.core.confidence_sequences import DEFAULT_TUNING_N, boundary, sequential_test
from shipyard.core.experiment_stats import FloatArray, MetricSummary, srm_check
from shipyard.core.rollout_rules import (
    MIN_UNITS,
    Decision,
    Guardrail,
    GuardrailCheck,
    check_guardrail,
    decide_step,
    excess_interval,
    guardrail_breached,
)
from shipyard.errors import InvalidInput

ALPHA = 0.05
BALANCED = srm_check([10_000, 10_000], [1, 1])


def rate(n: float, successes: float) -> MetricSummary[float]:
    return MetricSummary.proportion(n, successes)


def check(
    better: Any, control: float, candidate: float, n: float = 10_000, x: float = 0.0
) -> GuardrailCheck:
    """A guardrail check on rates ``control`` and ``candidate`` with ``n`` units per arm."""
    return check_guardrail(
        Guardrail("metric", better, x), rate(n, control * n), rate(n, candidate * n)
    )


# ---------------------------------------------------------------- guardrails
@pytest.mark.parametrize(
    ("better", "x"), [("up", 0.0), ("lower", -0.1), ("lower", math.nan), ("higher", math.inf)]
)
def test_guardrail_rejects_bad_settings(better: Any, x: float) -> None:
    with pytest.raises(InvalidInput):
        Guardrail("error_rate", better, x)


@pytest.mark.parametrize(("better", "x"), [("lower", 0.0), ("lower", 0.05), ("higher", 0.1)])
def test_excess_interval_is_the_formula(better: Any, x: float) -> None:
    control, treatment = (
        rate(8000, 800),
        MetricSummary.from_values(np.r_[np.ones(930), np.zeros(7070)], kind="proportion"),
    )
    excess, low, high = excess_interval(Guardrail("m", better, x), control, treatment)
    k = 1 + x if better == "lower" else 1 - x
    expected = 0.93 / 8 - k * 0.1
    expected = expected if better == "lower" else -expected
    half = boundary(16_000.0, alpha=ALPHA, tuning_n=DEFAULT_TUNING_N) * math.sqrt(
        0.11625 * 0.88375 / 8000 + k**2 * 0.1 * 0.9 / 8000
    )
    assert excess == pytest.approx(expected, rel=1e-12)
    assert (low, high) == (
        pytest.approx(expected - half, rel=1e-12),
        pytest.approx(expected + half, rel=1e-12),
    )


@pytest.mark.parametrize("better", ["lower", "higher"])
@pytest.mark.parametrize("x", [0.0, 0.05, 0.2])
def test_breach_means_the_relative_confidence_sequence_lies_beyond_x(better: Any, x: float) -> None:
    n = 5000.0
    control = rate(n, 500)
    breaches = 0
    for successes in range(300, 800, 3):
        treatment = rate(n, successes)
        relative = sequential_test(control, treatment)
        assert math.isfinite(relative.ci_low) and math.isfinite(relative.ci_high)
        beyond = relative.ci_low > x if better == "lower" else relative.ci_high < -x
        breached = guardrail_breached(Guardrail("m", better, x), control, treatment)
        assert breached == beyond, (successes, relative.ci_low, relative.ci_high)
        breaches += breached
    assert 0 < breaches < 166  # the grid spans both verdicts


def test_a_failing_candidate_against_a_flawless_control_is_breached() -> None:
    # the relative change is infinite; the linear form still decides
    failing = check("lower", 0.0, 0.3, n=200)
    assert failing.breached and failing.evaluable
    assert failing.relative.ci_low == -math.inf  # the relative CS is unbounded
    one_error = check("lower", 0.0, 1 / 200, n=200)
    assert not one_error.breached and one_error.evaluable
    both_flawless = check("lower", 0.0, 0.0, n=200)
    assert not both_flawless.breached and both_flawless.evaluable


def test_a_check_without_enough_units_is_not_evaluable() -> None:
    # one unit per arm, one error in the candidate: both plug-in variances are 0
    result = check_guardrail(Guardrail("m", "lower"), rate(1, 0), rate(1, 1))
    assert not result.evaluable and not result.breached
    assert result.excess == 1.0 and math.isnan(result.excess_ci_low)
    below = check_guardrail(Guardrail("m", "lower"), rate(MIN_UNITS - 1, 0), rate(MIN_UNITS, 30))
    assert not below.evaluable
    enough = check_guardrail(Guardrail("m", "lower"), rate(MIN_UNITS, 0), rate(MIN_UNITS, 30))
    assert enough.evaluable and enough.breached
    mean = MetricSummary.from_values([5.0])  # no n − 1 variance at all
    assert not check_guardrail(Guardrail("m", "lower"), mean, mean).evaluable


def test_guardrail_breached_is_elementwise() -> None:
    n = np.full(3, 4000.0)
    control = MetricSummary.proportion(n, np.array([400.0, 400.0, 400.0]))
    treatment = MetricSummary.proportion(n, np.array([400.0, 520.0, 300.0]))
    breached = guardrail_breached(Guardrail("m", "lower", 0.05), control, treatment)
    assert breached.tolist() == [False, True, False]
    for i in range(3):
        one = guardrail_breached(
            Guardrail("m", "lower", 0.05), rate(4000, control.sum[i]), rate(4000, treatment.sum[i])
        )
        assert one == breached[i]


# ---------------------------------------------------------------- decisions
def decide(**changes: Any) -> Decision:
    """decide_step on a passing error-rate guardrail, a balanced SRM and the minimum met."""
    options: dict[str, Any] = {
        "guardrails": [check("lower", 0.10, 0.10)],
        "srm": BALANCED,
        "minimum_met": True,
        "primary": None,
    }
    options.update(changes)
    guardrails = options.pop("guardrails")
    return decide_step(guardrails, **options)


@pytest.mark.parametrize(
    ("changes", "action"),
    [
        pytest.param({}, "promote", id="all-clear"),
        pytest.param({"primary": check("higher", 0.10, 0.12)}, "promote", id="primary-better"),
        pytest.param({"primary": check("higher", 0.10, 0.10)}, "promote", id="primary-flat"),
        pytest.param({"minimum_met": False}, "continue", id="minimum-not-met"),
        pytest.param(
            {"guardrails": [check("lower", 0.10, 0.10, n=1)]}, "continue", id="not-evaluable"
        ),
        pytest.param({"guardrails": [check("lower", 0.10, 0.13)]}, "rollback", id="breach"),
        pytest.param(
            {"guardrails": [check("lower", 0.10, 0.13)], "minimum_met": False},
            "rollback",
            id="breach-before-minimum",
        ),
        pytest.param({"primary": check("higher", 0.10, 0.08)}, "rollback", id="primary-worse"),
        pytest.param({"srm": srm_check([10_000, 10_600], [1, 1])}, "hold_for_srm", id="srm"),
        pytest.param(
            {
                "srm": srm_check([10_000, 10_600], [1, 1]),
                "guardrails": [check("lower", 0.10, 0.13)],
            },
            "hold_for_srm",
            id="srm-blocks-rollback",
        ),
    ],
)
def test_decision_precedence(changes: dict[str, Any], action: str) -> None:
    assert decide(**changes).action == action


def test_reasons_name_what_decided() -> None:
    rollback = decide(guardrails=[check("lower", 0.10, 0.13), check("lower", 0.10, 0.10)])
    assert len(rollback.reasons) == 1 and "'metric'" in rollback.reasons[0]
    assert "+0.3" in rollback.reasons[0]  # the relative change
    held = decide(srm=srm_check([10_000, 10_600], [1, 1]), guardrails=[check("lower", 0.1, 0.13)])
    assert held.reasons[0].startswith("sample ratio mismatch") and len(held.reasons) == 2
    waiting = decide(minimum_met=False, guardrails=[check("lower", 0.10, 0.10, n=1)])
    assert len(waiting.reasons) == 2


def test_decision_serialises_to_plain_json() -> None:
    decision = decide(
        guardrails=[check("lower", 0.10, 0.10, n=1)], primary=check("higher", 0.1, 0.11)
    )
    data = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert data["action"] == "continue"
    assert data["srm"]["counts"] == [10_000, 10_000]
    guardrail = data["guardrails"][0]
    assert guardrail["guardrail"] == {
        "metric": "metric",
        "better": "lower",
        "max_relative_worsening": 0.0,
    }
    assert guardrail["excess_ci_low"] is None  # NaN: not evaluable
    assert guardrail["relative"]["control_n"] == 1
    assert data["primary"]["relative"]["treatment_mean"] == pytest.approx(0.11)


# ---------------------------------------------------------------- simulations
def looks(
    rng: np.random.Generator, sims: int, count: int, batch: int, p: float
) -> MetricSummary[FloatArray]:
    """A binary metric's summaries after each of ``count`` looks of ``batch`` units per arm."""
    successes = np.cumsum(rng.binomial(batch, p, (sims, count)), axis=1) * 1.0
    n = np.broadcast_to(batch * np.arange(1.0, count + 1), (sims, count)).copy()
    return MetricSummary.proportion(n, successes)


@pytest.mark.parametrize(
    ("p", "batch"),
    [pytest.param(0.10, 250, id="10%-rate"), pytest.param(0.02, 100, id="2%-rate-small-batches")],
)
@pytest.mark.parametrize("better", ["lower", "higher"])
@pytest.mark.parametrize("x", [0.0, 0.05])
def test_aa_false_rollbacks_stay_within_alpha_over_20_looks(
    p: float, batch: int, better: Any, x: float
) -> None:
    sims, count = 10_000, 20
    rng = np.random.default_rng(21)
    control, candidate = looks(rng, sims, count, batch, p), looks(rng, sims, count, batch, p)
    breached = guardrail_breached(
        Guardrail("m", better, x), control, candidate, tuning_n=2 * batch * count
    )
    rollbacks = int(breached.any(axis=1).sum())
    assert rollbacks <= stats.binom.isf(0.01, sims, ALPHA), rollbacks


@pytest.mark.parametrize("p", [0.5, 0.1])
def test_aa_false_rollbacks_stay_within_alpha_when_looking_from_the_first_unit(p: float) -> None:
    # 19 looks at 1, 2, 3, 6, 9, 14, 23, … 5,000 units per arm: the first 7 below MIN_UNITS
    sims = 10_000
    sizes = np.unique(np.geomspace(1, 5000, 20).astype(int))
    rng = np.random.default_rng(25)
    arms = []
    for _ in range(2):
        batches = np.stack([rng.binomial(k, p, sims) for k in np.diff(sizes, prepend=0)], axis=1)
        n = np.broadcast_to(sizes * 1.0, batches.shape).copy()
        arms.append(MetricSummary.proportion(n, np.cumsum(batches, axis=1) * 1.0))
    for better in ("lower", "higher"):
        breached = guardrail_breached(Guardrail("m", better), arms[0], arms[1], tuning_n=10_000)
        assert breached.any(axis=1).sum() <= stats.binom.isf(0.01, sims, ALPHA)


@pytest.mark.parametrize("better", ["lower", "higher"])
def test_a_candidate_exactly_at_the_allowed_worsening_is_rarely_rolled_back(better: Any) -> None:
    sims, count, batch, x = 10_000, 20, 250, 0.1
    rng = np.random.default_rng(22)
    control = looks(rng, sims, count, batch, 0.10)
    candidate = looks(rng, sims, count, batch, 0.10 * (1 + x if better == "lower" else 1 - x))
    breached = guardrail_breached(Guardrail("m", better, x), control, candidate, tuning_n=10_000)
    assert breached.any(axis=1).sum() <= stats.binom.isf(0.01, sims, ALPHA)


@pytest.mark.parametrize(
    ("better", "candidate_rate"), [("lower", 0.15), ("higher", 0.06)], ids=["errors", "conversions"]
)
def test_a_clearly_worse_candidate_is_rolled_back(better: Any, candidate_rate: float) -> None:
    sims, count, batch = 4000, 20, 250
    rng = np.random.default_rng(23)
    control = looks(rng, sims, count, batch, 0.10)
    candidate = looks(rng, sims, count, batch, candidate_rate)
    breached = guardrail_breached(Guardrail("m", better, 0.05), control, candidate, tuning_n=10_000)
    # ≥ 97% rolled back (the count must exceed the 1% quantile of Binomial(S, 0.97))
    assert breached.any(axis=1).sum() >= stats.binom.ppf(0.01, sims, 0.97)
    assert breached[:, -1].mean() > breached[:, 0].mean()  # evidence accumulates


def test_a_canary_run_look_by_look_rolls_back_a_worse_candidate() -> None:
    rng = np.random.default_rng(24)
    guardrail = Guardrail("error_rate", "lower", 0.05)
    control_errors = candidate_errors = 0
    decisions = []
    for look in range(1, 21):
        n = 250 * look
        control_errors += int(rng.binomial(250, 0.02))
        candidate_errors += int(rng.binomial(250, 0.05))
        result = check_guardrail(
            guardrail, rate(n, control_errors), rate(n, candidate_errors), tuning_n=10_000
        )
        decision = decide_step([result], srm=srm_check([n, n], [1, 1]), minimum_met=look >= 10)
        decisions.append(decision.action)
        if decision.action == "rollback":
            break
    assert decisions[-1] == "rollback" and set(decisions[:-1]) <= {"continue"}
