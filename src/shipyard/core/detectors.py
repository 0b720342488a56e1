"""Streaming change detectors on a metric stream: Page-Hinkley and ADWIN.

Both follow the river conventions: hyper-parameters in ``__init__`` stored under the same names,
``update(x) -> bool`` (True when this observation completes a detected change), read-only
properties for the state (``n``, ``mean``, ``drift_detected`` …) and ``reset()``.

**Page-Hinkley** (Page 1954; the two-sided form used by river and scikit-multiflow). With the
running mean ``x̄_t`` of the observations so far (the current one included)::

    up_t   = alpha * up_{t-1}   + (x_t - x̄_t - delta)    statistic_up   = up_t - min(0, up_1..t)
    down_t = alpha * down_{t-1} + (x_t - x̄_t + delta)    statistic_down = max(0, down_1..t) - down_t

and a change is detected when, with at least ``min_instances`` observations, the statistic of the
watched side (``mode``: ``"up"``, ``"down"`` or ``"both"``, the larger of the two) exceeds
``threshold``. After a detection the next ``update`` starts afresh (as river does).

*False alarms.* ``threshold`` is in units of the metric times observations, so its false-alarm
rate depends on the noise level of the metric and on how long the detector runs. For independent
Gaussian noise of standard deviation σ, ``alpha = 1`` and a known mean, one side is a CUSUM whose
increments are N(-delta, σ²); Siegmund's approximation gives its mean run length to a false alarm
as ``ARL ≈ (exp(2·a) - 1 - 2·a) · σ² / (2·delta²)`` with ``a = delta·(threshold + 1.166σ)/σ²``,
so the chance of at least one alarm in ``N`` observations is about ``1 - exp(-N/ARL)`` per side.
The running mean pulls the sum of deviations back towards zero, so this overstates the rate of the
detector as implemented (about 0.25 for both sides against 0.05 measured, at σ = 1, N = 2,000,
threshold 98, delta 0.005); with the forgetting factor and the warm-up on top, the rate shipyard
states is measured instead: :func:`calibrate_threshold` returns the threshold whose simulated
probability of one or more false alarms in ``horizon`` observations of N(μ, noise_std²) is
``false_alarm_rate`` (the ``1 - false_alarm_rate`` quantile of
:func:`page_hinkley_max_statistic` over seeded streams); :func:`page_hinkley_max_statistic`
calibrates on any set of streams — stretches of the metric's own history, say — when the noise is
not Gaussian or not independent.

**ADWIN** (Bifet & Gavaldà, "Learning from time-changing data with adaptive windowing", SDM 2007;
ADWIN2 with exponential histograms). The window is kept as buckets of ``2**i`` observations, at
most ``max_buckets`` per size, each holding its sum and its sum of squared deviations (memory and
time per check O(max_buckets · log(width))). Every ``clock`` observations, once the window holds
more than ``grace_period``, every split of the window at a bucket boundary into an older part W0
and a newer part W1 (each at least ``min_window_length`` long) is tested, and the oldest bucket is
dropped while some split satisfies ``|mean(W0) - mean(W1)| >= eps_cut``, with the paper's
Bernstein-type bound::

    eps_cut = sqrt(2/m · var_W · ln(2/delta')) + 2/(3m) · ln(2/delta'),
    m = 1 / (1/n0 + 1/n1),   delta' = delta / ln(width)

*False alarms.* The paper proves (Theorem 3.1, for its Hoeffding form of ``eps_cut`` with
``delta' = delta / width``) that on a stationary stream with values in [0, 1] a check shrinks the
window with probability at most ``delta``. The bound above is the paper's practical form (variance
estimated from the window, union over the bucket boundaries), so for it the statement is
approximate, and the tests check it by simulation: on stationary Bernoulli(0.2) streams the share
of checks that cut stays below ``delta`` (measured: 0 of 12,400 checks at ``delta = 0.002``, 0.4%
of checks at ``delta = 0.3``). The expected number of false alarms over ``N`` observations is
then at most ``delta · N / clock``. The second term of ``eps_cut`` assumes
values in [0, 1] (error indicators, accuracies, rates): scale other metrics into that range.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from shipyard.errors import InvalidInput

Mode = Literal["up", "down", "both"]
_MODES: tuple[str, ...] = ("up", "down", "both")


class ChangeDetector(Protocol):
    """What every detector here offers (and what the monitoring service relies on)."""

    @property
    def n(self) -> int: ...

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: float) -> bool: ...

    def reset(self) -> None: ...


def _finite(x: float) -> float:
    value = float(x)
    if not math.isfinite(value):
        raise InvalidInput(f"a detector needs finite values, got {x!r}", field="x")
    return value


def _check_page_hinkley(delta: float, threshold: float, alpha: float, min_instances: int) -> None:
    if not (math.isfinite(delta) and delta >= 0.0):
        raise InvalidInput(f"delta must be a finite number >= 0, got {delta}", field="delta")
    if not (math.isfinite(threshold) and threshold > 0.0):
        raise InvalidInput(
            f"threshold must be a finite number > 0, got {threshold}", field="threshold"
        )
    if not 0.0 < alpha <= 1.0:
        raise InvalidInput(f"alpha must be in (0, 1], got {alpha}", field="alpha")
    if min_instances < 1:
        raise InvalidInput(
            f"min_instances must be >= 1, got {min_instances}", field="min_instances"
        )


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise InvalidInput(f"mode must be one of {', '.join(_MODES)}; got {mode!r}", field="mode")


class PageHinkley:
    """Page-Hinkley test for a change in the mean of a stream (see the module docstring)."""

    def __init__(
        self,
        *,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1.0 - 0.0001,
        mode: Mode = "both",
    ) -> None:
        _check_page_hinkley(delta, threshold, alpha, min_instances)
        _check_mode(mode)
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._up = 0.0
        self._min_up = 0.0
        self._down = 0.0
        self._max_down = 0.0
        self._statistic = 0.0
        self._drift_detected = False

    @property
    def n(self) -> int:
        """Observations since the start or the last detection."""
        return self._n

    @property
    def mean(self) -> float:
        """Running mean of those observations (0.0 before the first)."""
        return self._mean

    @property
    def statistic(self) -> float:
        """Current Page-Hinkley statistic of the watched side(s); compared with ``threshold``."""
        return self._statistic

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> bool:
        value = _finite(x)
        if self._drift_detected:
            self.reset()
        self._n += 1
        self._mean += (value - self._mean) / self._n
        deviation = value - self._mean
        self._up = self.alpha * self._up + deviation - self.delta
        self._min_up = min(self._min_up, self._up)
        self._down = self.alpha * self._down + deviation + self.delta
        self._max_down = max(self._max_down, self._down)
        if self.mode == "up":
            self._statistic = self._up - self._min_up
        elif self.mode == "down":
            self._statistic = self._max_down - self._down
        else:
            self._statistic = max(self._up - self._min_up, self._max_down - self._down)
        self._drift_detected = self._n >= self.min_instances and self._statistic > self.threshold
        return self._drift_detected


class _PageHinkleyPaths:
    """The Page-Hinkley recursion of :class:`PageHinkley` on many streams at once (rows), fed in
    blocks of time steps; keeps, per stream, the largest statistic from ``min_instances`` on."""

    def __init__(
        self, streams: int, *, delta: float, alpha: float, min_instances: int, mode: Mode
    ) -> None:
        self.delta, self.alpha, self.min_instances, self.mode = delta, alpha, min_instances, mode
        self.t = 0
        self.mean = np.zeros(streams)
        self.up = np.zeros(streams)
        self.min_up = np.zeros(streams)
        self.down = np.zeros(streams)
        self.max_down = np.zeros(streams)
        self.maximum = np.full(streams, -np.inf)

    def feed(self, block: npt.NDArray[np.float64]) -> None:
        for column in block.T:
            self.t += 1
            self.mean += (column - self.mean) / self.t
            deviation = column - self.mean
            self.up *= self.alpha
            self.up += deviation - self.delta
            np.minimum(self.min_up, self.up, out=self.min_up)
            self.down *= self.alpha
            self.down += deviation + self.delta
            np.maximum(self.max_down, self.down, out=self.max_down)
            if self.t < self.min_instances:
                continue
            if self.mode == "up":
                statistic = self.up - self.min_up
            elif self.mode == "down":
                statistic = self.max_down - self.down
            else:
                statistic = np.maximum(self.up - self.min_up, self.max_down - self.down)
            np.maximum(self.maximum, statistic, out=self.maximum)


def page_hinkley_max_statistic(
    streams: npt.ArrayLike,
    *,
    min_instances: int = 30,
    delta: float = 0.005,
    alpha: float = 1.0 - 0.0001,
    mode: Mode = "both",
) -> npt.NDArray[np.float64]:
    """Per row of ``streams`` (shape ``(n_streams, length)``), the largest value the statistic of a
    :class:`PageHinkley` with these parameters takes from observation ``min_instances`` on
    (``-inf`` when a row is shorter than that). A detector with threshold λ raises an alarm on the
    row iff this exceeds λ, so its quantiles over rows of undrifted data calibrate λ."""
    _check_page_hinkley(delta, 1.0, alpha, min_instances)
    _check_mode(mode)
    values = np.asarray(streams, dtype=np.float64)
    if values.ndim != 2:
        raise InvalidInput(
            f"streams must be 2-dimensional (n_streams, length), got shape {values.shape}",
            field="streams",
        )
    if not np.isfinite(values).all():
        raise InvalidInput("streams must hold finite values only", field="streams")
    paths = _PageHinkleyPaths(
        values.shape[0], delta=delta, alpha=alpha, min_instances=min_instances, mode=mode
    )
    paths.feed(values)
    return paths.maximum


def calibrate_threshold(
    noise_std: float,
    horizon: int,
    false_alarm_rate: float,
    seed: int,
    *,
    min_instances: int = 30,
    delta: float = 0.005,
    alpha: float = 1.0 - 0.0001,
    mode: Mode = "both",
    n_streams: int = 4_000,
) -> float:
    """The Page-Hinkley ``threshold`` whose probability of at least one false alarm within
    ``horizon`` observations of i.i.d. N(μ, noise_std²) noise is ``false_alarm_rate``, measured on
    ``n_streams`` seeded simulated streams (the empirical ``1 - false_alarm_rate`` quantile of
    :func:`page_hinkley_max_statistic`; its own rate is off by about
    ``sqrt(rate · (1 - rate) / n_streams)``). Cost: O(n_streams · horizon), about 25 µs per time
    step for 4,000 streams."""
    if not (math.isfinite(noise_std) and noise_std > 0.0):
        raise InvalidInput(
            f"noise_std must be a finite number > 0, got {noise_std}", field="noise_std"
        )
    if horizon < min_instances:
        raise InvalidInput(
            f"horizon must be >= min_instances ({min_instances}), got {horizon}", field="horizon"
        )
    if not 0.0 < false_alarm_rate < 1.0:
        raise InvalidInput(
            f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}", field="false_alarm_rate"
        )
    if n_streams * false_alarm_rate < 10:
        raise InvalidInput(
            f"n_streams ({n_streams}) is too small to estimate a false_alarm_rate of "
            f"{false_alarm_rate}: need n_streams * false_alarm_rate >= 10",
            field="n_streams",
        )
    _check_page_hinkley(delta, 1.0, alpha, min_instances)
    _check_mode(mode)
    rng = np.random.default_rng(seed)
    paths = _PageHinkleyPaths(
        n_streams, delta=delta, alpha=alpha, min_instances=min_instances, mode=mode
    )
    block = max(1, min(horizon, 2_000_000 // n_streams))  # bounds memory to ~16 MB per block
    for start in range(0, horizon, block):
        paths.feed(rng.normal(0.0, noise_std, size=(n_streams, min(block, horizon - start))))
    return float(np.quantile(paths.maximum, 1.0 - false_alarm_rate, method="higher"))


class ADWIN:
    """ADaptive WINdowing (ADWIN2 with exponential histograms; see the module docstring)."""

    def __init__(
        self,
        delta: float = 0.002,
        *,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise InvalidInput(f"delta must be in (0, 1), got {delta}", field="delta")
        if clock < 1:
            raise InvalidInput(f"clock must be >= 1, got {clock}", field="clock")
        if max_buckets < 2:
            raise InvalidInput(f"max_buckets must be >= 2, got {max_buckets}", field="max_buckets")
        if min_window_length < 1:
            raise InvalidInput(
                f"min_window_length must be >= 1, got {min_window_length}",
                field="min_window_length",
            )
        if grace_period < 2 * min_window_length or grace_period < 3:
            raise InvalidInput(
                f"grace_period must be >= max(3, 2 * min_window_length), got {grace_period}",
                field="grace_period",
            )
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.reset()

    def reset(self) -> None:
        # Row i holds buckets of 2**i observations, oldest first; older rows hold older buckets.
        self._totals: list[list[float]] = [[]]
        self._squares: list[list[float]] = [[]]  # sum of squared deviations within each bucket
        self._width = 0
        self._total = 0.0
        self._m2 = 0.0  # sum of squared deviations from the window mean
        self._n = 0
        self._n_detections = 0
        self._drift_detected = False

    @property
    def n(self) -> int:
        """Observations since the start (or ``reset``), the dropped ones included."""
        return self._n

    @property
    def width(self) -> int:
        """Observations in the current window."""
        return self._width

    @property
    def mean(self) -> float:
        """Mean of the current window (0.0 when empty)."""
        return self._total / self._width if self._width else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the current window (0.0 when empty)."""
        return self._m2 / self._width if self._width else 0.0

    @property
    def n_detections(self) -> int:
        return self._n_detections

    @property
    def drift_detected(self) -> bool:
        return self._drift_detected

    def update(self, x: float) -> bool:
        value = _finite(x)
        self._n += 1
        if self._width:
            deviation = value - self._total / self._width
            self._m2 += deviation * deviation * self._width / (self._width + 1)
        self._width += 1
        self._total += value
        self._insert(value)
        self._drift_detected = False
        if self._n % self.clock == 0 and self._width > self.grace_period:
            while self._width > self.grace_period and self._cut_found():
                self._drop_oldest()
                self._drift_detected = True
            if self._drift_detected:
                self._n_detections += 1
        return self._drift_detected

    def _insert(self, value: float) -> None:
        totals, squares = self._totals, self._squares
        totals[0].append(value)
        squares[0].append(0.0)
        row = 0
        while len(totals[row]) > self.max_buckets:
            if row + 1 == len(totals):
                totals.append([])
                squares.append([])
            size = float(1 << row)
            t1, t2 = totals[row][0], totals[row][1]
            gap = (t1 - t2) / size
            merged = squares[row][0] + squares[row][1] + gap * gap * size / 2.0
            del totals[row][:2]
            del squares[row][:2]
            totals[row + 1].append(t1 + t2)
            squares[row + 1].append(merged)
            row += 1

    def _drop_oldest(self) -> None:
        row = len(self._totals) - 1
        size = 1 << row
        total = self._totals[row].pop(0)
        square = self._squares[row].pop(0)
        rest = self._width - size
        if rest:
            gap = total / size - (self._total - total) / rest
            self._m2 = max(0.0, self._m2 - square - gap * gap * size * rest / self._width)
        else:
            self._m2 = 0.0
        self._width = rest
        self._total -= total
        if not self._totals[row] and row > 0:
            self._totals.pop()
            self._squares.pop()

    def _cut_found(self) -> bool:
        width, total = self._width, self._total
        variance = self._m2 / width
        log_term = math.log(2.0 * math.log(width) / self.delta)
        minimum = self.min_window_length
        n0, sum0 = 0, 0.0
        for row in range(len(self._totals) - 1, -1, -1):
            size = 1 << row
            for bucket_total in self._totals[row]:
                n0 += size
                sum0 += bucket_total
                n1 = width - n0
                if n1 < minimum:
                    return False
                if n0 < minimum:
                    continue
                m_inverse = 1.0 / n0 + 1.0 / n1
                epsilon = math.sqrt(2.0 * m_inverse * variance * log_term)
                epsilon += 2.0 / 3.0 * m_inverse * log_term
                if abs(sum0 / n0 - (total - sum0) / n1) >= epsilon:
                    return True
        return False
