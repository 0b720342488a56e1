"""The circuit breaker state machine, driven by explicit times."""

from __future__ import annotations

import pytest

from shipyard.core.breaker import BreakerState, CircuitBreaker


def test_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    breaker = CircuitBreaker(window=10, min_calls=4, failure_rate=0.5, open_s=5)
    for failed in (False, True, False):
        assert breaker.allow(0)
        breaker.record(failed=failed, now=0)
    assert breaker.state(0) is BreakerState.CLOSED  # 3 calls < min_calls
    breaker.record(failed=True, now=1)  # 2 of 4 failed
    assert breaker.state(1) is BreakerState.OPEN
    assert not breaker.allow(2)
    assert breaker.retry_after(2) == pytest.approx(4)


def test_half_open_probe_closes_on_success_and_reopens_on_failure() -> None:
    breaker = CircuitBreaker(window=4, min_calls=2, failure_rate=1.0, open_s=10, probes=1)
    breaker.record(failed=True, now=0)
    breaker.record(failed=True, now=0)
    assert breaker.state(9.9) is BreakerState.OPEN
    assert breaker.allow(10)  # the one probe
    assert not breaker.allow(10)  # nobody else while it runs
    breaker.record(failed=True, now=10.5)
    assert breaker.state(10.5) is BreakerState.OPEN
    assert not breaker.allow(20)
    assert breaker.allow(20.5)
    breaker.record(failed=False, now=20.6)
    assert breaker.state(20.6) is BreakerState.CLOSED
    assert breaker.allow(20.7)


def test_only_the_last_window_of_calls_counts() -> None:
    breaker = CircuitBreaker(window=4, min_calls=4, failure_rate=0.75)
    for failed in (True, True, False, False, False, True, True):
        breaker.record(failed=failed, now=0)
    assert breaker.state(0) is BreakerState.CLOSED  # window holds F,F,T,T: 50%
    breaker.record(failed=True, now=0)  # F,T,T,T: 75%
    assert breaker.state(0) is BreakerState.OPEN


@pytest.mark.parametrize(
    "kwargs", [{"failure_rate": 0.0}, {"failure_rate": 1.5}, {"window": 3, "min_calls": 5}]
)
def test_rejects_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
