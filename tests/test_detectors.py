"""Streaming detectors: false alarms and detection delays by seeded simulation; state and reset.

Tolerances come from the binomial: a count of alarms over independent streams is checked against
the 99.9% two-sided interval of Binomial(streams, rate), widened by the Monte Carlo error of the
calibrated rate where the rate itself was estimated.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from shipyard.core.detectors import (
    ADWIN,
    ChangeDetector,
    Mode,
    PageHinkley,
    calibrate_threshold,
    page_hinkley_max_statistic,
)
from shipyard.errors import InvalidInput

HORIZON = 2_000
STREAMS = 200
RATE = 0.05
CALIBRATION_STREAMS = 4_000


def _first_alarm(detector: ChangeDetector, stream: np.ndarray) -> int | None:
    for index, value in enumerate(stream.tolist()):
        if detector.update(value):
            return index
    return None


def _binomial_interval(n: int, low_rate: float, high_rate: float) -> tuple[int, int]:
    """Counts outside this range have probability < 0.1% for any rate in [low_rate, high_rate]."""
    return (
        int(stats.binom.ppf(0.0005, n, low_rate)),
        int(stats.binom.isf(0.0005, n, high_rate)),
    )


# ------------------------------------------------------------------ Page-Hinkley
def test_page_hinkley_calibrated_false_alarm_rate_holds_on_independent_streams() -> None:
    threshold = calibrate_threshold(1.0, HORIZON, RATE, seed=11, n_streams=CALIBRATION_STREAMS)
    # The calibrated threshold's true rate is RATE up to the calibration's Monte Carlo error.
    slack = 3.3 * math.sqrt(RATE * (1 - RATE) / CALIBRATION_STREAMS)

    # 200 streams through the streaming class itself.
    streams = np.random.default_rng(12).normal(0.0, 1.0, (STREAMS, HORIZON))
    alarms = sum(
        _first_alarm(PageHinkley(threshold=threshold), stream) is not None for stream in streams
    )
    low, high = _binomial_interval(STREAMS, RATE - slack, RATE + slack)
    assert low <= alarms <= high, (alarms, low, high)

    # 4,000 fresh streams through the vectorised statistic: a much tighter check of the same rate.
    fresh = np.random.default_rng(13).normal(0.0, 1.0, (CALIBRATION_STREAMS, HORIZON))
    fresh_alarms = int((page_hinkley_max_statistic(fresh) > threshold).sum())
    low, high = _binomial_interval(CALIBRATION_STREAMS, RATE - slack, RATE + slack)
    assert low <= fresh_alarms <= high, (fresh_alarms, low, high)


def test_page_hinkley_threshold_scales_with_the_noise_and_the_rate() -> None:
    base = calibrate_threshold(1.0, 500, 0.05, seed=3, n_streams=1_000)
    assert calibrate_threshold(1.0, 500, 0.05, seed=3, n_streams=1_000) == base  # seeded
    assert calibrate_threshold(1.0, 500, 0.01, seed=3, n_streams=1_000) > base  # rarer alarms
    assert calibrate_threshold(1.0, 2_000, 0.05, seed=3, n_streams=1_000) > base  # longer run
    # delta = 0 and alpha = 1 make the statistic exactly proportional to the noise scale.
    unit = calibrate_threshold(1.0, 500, 0.05, seed=3, delta=0.0, alpha=1.0, n_streams=1_000)
    scaled = calibrate_threshold(3.0, 500, 0.05, seed=3, delta=0.0, alpha=1.0, n_streams=1_000)
    assert scaled == pytest.approx(3.0 * unit, rel=1e-12)


@pytest.mark.parametrize("mode", ["up", "down", "both"])
@pytest.mark.parametrize("alpha", [1.0, 0.99])
def test_vectorised_statistic_matches_the_streaming_detector(mode: Mode, alpha: float) -> None:
    streams = np.random.default_rng(5).normal(0.3, 2.0, (4, 300))
    vectorised = page_hinkley_max_statistic(
        streams,
        min_instances=20,
        alpha=alpha,
        mode=mode,
    )
    for row, expected in zip(streams, vectorised, strict=True):
        detector = PageHinkley(min_instances=20, alpha=alpha, threshold=1e12, mode=mode)
        largest = -math.inf
        for value in row.tolist():
            detector.update(value)
            if detector.n >= 20:
                largest = max(largest, detector.statistic)
        assert largest == pytest.approx(float(expected), rel=1e-12, abs=1e-12)


def test_page_hinkley_detects_a_one_sigma_shift_within_120_points_median() -> None:
    # σ = 1 noise; the mean moves by +1σ after 1,000 points; threshold for 5% false alarms / 2,000.
    threshold = calibrate_threshold(1.0, HORIZON, RATE, seed=11, n_streams=CALIBRATION_STREAMS)
    rng = np.random.default_rng(21)
    change, delays, early = 1_000, [], 0
    for _ in range(100):
        stream = rng.normal(0.0, 1.0, 1_600)
        stream[change:] += 1.0
        detector = PageHinkley(threshold=threshold)
        alarm = _first_alarm(detector, stream[:change])
        if alarm is not None:
            early += 1
            detector.reset()
        delay = _first_alarm(detector, stream[change:])
        assert delay is not None, "a 1σ shift went unnoticed for 600 points"
        delays.append(delay)
    # Measured: median 81, 10th-90th percentile 60-102.
    assert 40 <= float(np.median(delays)) <= 120
    assert max(delays) <= 300
    # Early alarms are false alarms in 1,000 points: at most the 2,000-point rate, with tolerance.
    assert early <= _binomial_interval(100, RATE, RATE)[1]


def test_page_hinkley_watches_only_its_side() -> None:
    rng = np.random.default_rng(8)
    falling = np.concatenate([rng.normal(0, 0.1, 200), rng.normal(-2, 0.1, 200)])
    assert _first_alarm(PageHinkley(threshold=20, mode="up"), falling) is None
    assert _first_alarm(PageHinkley(threshold=20, mode="down"), falling) is not None
    assert _first_alarm(PageHinkley(threshold=20, mode="both"), falling) is not None
    rising = -falling
    assert _first_alarm(PageHinkley(threshold=20, mode="down"), rising) is None
    assert _first_alarm(PageHinkley(threshold=20, mode="up"), rising) is not None


def test_page_hinkley_state_and_restart_after_a_detection() -> None:
    rng = np.random.default_rng(9)
    values = rng.normal(5.0, 1.0, 100)
    detector = PageHinkley(threshold=1e9)
    for value in values.tolist():
        assert detector.update(value) is False
    assert detector.n == 100
    assert detector.mean == pytest.approx(float(values.mean()), rel=1e-12)
    assert detector.statistic >= 0.0
    assert not detector.drift_detected

    shifted = PageHinkley(threshold=5.0, min_instances=10)
    stream = np.concatenate([np.zeros(50), np.full(50, 3.0)])
    alarm = _first_alarm(shifted, stream)
    assert alarm is not None and alarm >= 50
    assert shifted.drift_detected and shifted.statistic > 5.0
    assert shifted.update(3.0) is False  # the update after a detection starts afresh
    assert shifted.n == 1 and shifted.mean == 3.0 and not shifted.drift_detected


def test_page_hinkley_rejects_bad_parameters_and_values() -> None:
    with pytest.raises(InvalidInput) as info:
        PageHinkley(threshold=0.0)
    assert info.value.field == "threshold"
    with pytest.raises(InvalidInput):
        PageHinkley(alpha=1.5)
    with pytest.raises(InvalidInput):
        PageHinkley(mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        PageHinkley().update(math.nan)
    with pytest.raises(InvalidInput) as info:
        calibrate_threshold(1.0, 500, 0.001, seed=0, n_streams=1_000)
    assert info.value.field == "n_streams"
    with pytest.raises(InvalidInput):
        page_hinkley_max_statistic(np.zeros(10))


# ------------------------------------------------------------------ ADWIN
@pytest.mark.parametrize("delta", [0.002, 0.1])
def test_adwin_share_of_checks_that_cut_on_stationary_streams_is_below_delta(delta: float) -> None:
    rng = np.random.default_rng(31)
    cuts = 0
    checks = 0
    alarmed_streams = 0
    for _ in range(STREAMS):
        detector = ADWIN(delta)
        stream = (rng.random(HORIZON) < 0.2).astype(float)
        alarmed_streams += _first_alarm(detector, stream) is not None
        for value in stream[detector.n :].tolist():
            detector.update(value)
        cuts += detector.n_detections
        checks += HORIZON // detector.clock
    # Per check: P(cut) <= delta, so the count of cuts is at most Binomial(checks, delta).
    assert cuts <= _binomial_interval(checks, delta, delta)[1]
    # Per stream: expected alarms <= delta * HORIZON / clock (a Markov bound on any alarm).
    assert alarmed_streams / STREAMS <= delta * HORIZON / 32


def test_adwin_detects_an_error_rate_rising_from_20_to_40_percent_within_250_points_median() -> (
    None
):
    rng = np.random.default_rng(41)
    change, delays, widths, means = 1_000, [], [], []
    for _ in range(100):
        stream = (rng.random(1_600) < 0.2).astype(float)
        stream[change:] = rng.random(600) < 0.4
        detector = ADWIN()
        for value in stream[:change].tolist():
            detector.update(value)
        delay = _first_alarm(detector, stream[change:])
        assert delay is not None, "a doubled error rate went unnoticed for 600 points"
        delays.append(delay)
        for value in stream[change + delay + 1 :].tolist():
            detector.update(value)
        widths.append(detector.width)
        means.append(detector.mean)
    # Measured: median 151, 10th-90th percentile 87-247.
    assert float(np.median(delays)) <= 250
    # At the end the window is cut back to mostly new data (bucket granularity keeps some old):
    # measured median width 768 of 1,600 and median window mean 0.355.
    assert float(np.median(widths)) <= 900
    assert float(np.median(means)) >= 0.33


def test_adwin_window_is_exactly_the_last_width_values() -> None:
    rng = np.random.default_rng(51)
    stream = np.concatenate([rng.normal(0.2, 0.05, 3_000), rng.normal(0.7, 0.05, 1_000)])
    detector = ADWIN(max_buckets=3)
    for index, value in enumerate(stream.tolist(), start=1):
        detector.update(value)
        if index % 97 == 0 or detector.drift_detected:
            window = stream[index - detector.width : index]
            assert detector.n == index
            assert detector.mean == pytest.approx(float(window.mean()), rel=1e-9)
            assert detector.variance == pytest.approx(float(window.var()), rel=1e-6, abs=1e-12)
    assert detector.n_detections >= 1
    # The pre-change data was dropped but for what shares a bucket with new data.
    assert detector.width < 1_100
    assert detector.mean == pytest.approx(0.7, abs=0.02)


def test_adwin_rejects_bad_parameters() -> None:
    with pytest.raises(InvalidInput) as info:
        ADWIN(delta=0.0)
    assert info.value.field == "delta"
    with pytest.raises(InvalidInput):
        ADWIN(grace_period=4, min_window_length=5)
    with pytest.raises(InvalidInput):
        ADWIN().update(math.inf)


# ------------------------------------------------------------------ every detector
DETECTORS: list[Callable[[], ChangeDetector]] = [
    lambda: PageHinkley(threshold=10.0, min_instances=10),
    lambda: ADWIN(clock=8),
]


@pytest.mark.parametrize(
    "make",
    [pytest.param(make, id=name) for make, name in zip(DETECTORS, ["ph", "adwin"], strict=True)],
)
def test_detector_contract_update_reset_and_state(make: Callable[[], ChangeDetector]) -> None:
    rng = np.random.default_rng(61)
    stream = np.concatenate([rng.normal(0.3, 0.05, 400), rng.normal(0.8, 0.05, 400)]).tolist()
    detector = make()
    assert detector.n == 0 and not detector.drift_detected
    decisions = []
    for value in stream:
        result = detector.update(value)
        assert result is detector.drift_detected
        decisions.append(result)
    assert any(decisions[400:]) and not any(decisions[:400])

    detector.reset()
    assert detector.n == 0 and not detector.drift_detected
    assert [detector.update(value) for value in stream] == decisions  # reset == a fresh detector
