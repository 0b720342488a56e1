"""A circuit breaker: stop calling a failing model, probe it now and then, close when it recovers.

Pure state machine; the caller passes the time. ``closed`` counts outcomes over the last
``window`` calls and opens when at least ``min_calls`` were seen and the share of failures
(errors and timeouts) reaches ``failure_rate``. ``open`` refuses calls for ``open_s`` seconds,
then lets ``probes`` calls through (``half_open``): all succeed → closed, one fails → open again.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        window: int = 20,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        open_s: float = 10.0,
        probes: int = 1,
    ) -> None:
        if not 0.0 < failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        if not 1 <= min_calls <= window:
            raise ValueError(f"need 1 <= min_calls <= window, got {min_calls} and {window}")
        self.window = window
        self.min_calls = min_calls
        self.failure_rate = failure_rate
        self.open_s = open_s
        self.probes = probes
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failure
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probes_left = 0
        self._probe_successes = 0

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.open_s:
            self._state = BreakerState.HALF_OPEN
            self._probes_left = self.probes
            self._probe_successes = 0
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go to the model now (a half-open probe is reserved if so)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_left > 0:
            self._probes_left -= 1
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until the next probe may go through (0 when calls are allowed)."""
        if self.state(now) is BreakerState.OPEN:
            return max(0.0, self.open_s - (now - self._opened_at))
        return 0.0

    def record(self, *, failed: bool, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            if failed:
                self._open(now)
            else:
                self._probe_successes += 1
                if self._probe_successes >= self.probes:
                    self._state = BreakerState.CLOSED
                    self._outcomes.clear()
            return
        if state is BreakerState.OPEN:
            return  # a call admitted before the breaker opened: its outcome is stale
        self._outcomes.append(failed)
        if (
            len(self._outcomes) >= self.min_calls
            and sum(self._outcomes) / len(self._outcomes) >= self.failure_rate
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._outcomes.clear()
