"""Sticky assignment: the pinned hash, stickiness across objects, processes and ramps, the split.

Statistical checks are deterministic (fixed salts and unit keys) and use two-sided 99.9% binomial
intervals (``scipy.stats.binom.interval(0.999, n, weight)``) per variant, plus a chi-square
goodness-of-fit at p > 0.001; for a uniform hash each single check fails with probability 0.001.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from hashlib import blake2b

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shipyard.core.assignment import BUCKETS, Allocation, BanditAllocation, bucket_of
from shipyard.errors import InvalidInput

salts = st.text(min_size=1, max_size=30).filter(lambda s: "\0" not in s)
units = st.text(max_size=40)


@st.composite
def fractions(draw: st.DrawFn, k: int, *, positive: bool = False) -> list[float]:
    """``k`` non-negative fractions summing to 1."""
    low = 1 if positive else 0
    raw = draw(st.lists(st.integers(low, 1000), min_size=k, max_size=k).filter(any))
    return [value / sum(raw) for value in raw]


@st.composite
def ramps(draw: st.DrawFn) -> tuple[list[str], list[float], list[list[float]]]:
    """Variants, lanes, and 2-6 weight vectors in which each non-control weight never shrinks."""
    k = draw(st.integers(2, 5))
    variants = ["control", *(f"v{i}" for i in range(1, k))]
    lanes = (
        draw(fractions(k - 1, positive=True)) if draw(st.booleans()) else [1 / (k - 1)] * (k - 1)
    )
    filled = [0] * (k - 1)  # how much of its lane each variant fills, in 1/1000s
    steps = []
    for _ in range(draw(st.integers(2, 6))):
        filled = [
            min(1000, value + draw(st.sampled_from([0, 1, 10, 100, 250, 1000]))) for value in filled
        ]
        treatment = [lane * value / 1000 for lane, value in zip(lanes, filled, strict=True)]
        steps.append([max(0.0, 1.0 - math.fsum(treatment)), *treatment])
    return variants, lanes, steps


def layout(allocation: Allocation | BanditAllocation) -> list[str]:
    return [allocation.variant_at(bucket) for bucket in range(BUCKETS)]


# ------------------------------------------------------------------ the hash
PINNED = [
    ("exp-1", "user-1", 126),
    ("exp-1", "user-2", 8947),
    ("checkout-button", "42", 3594),
    ("checkout-button", "", 6971),
    ("sälz", "ユーザー", 9446),
    ("exp-1", "\ud800", 534),  # a lone surrogate (json.loads lets one through) still hashes
]


@pytest.mark.parametrize(("salt", "unit", "bucket"), PINNED)
def test_bucket_values_are_pinned_forever(salt: str, unit: str, bucket: int) -> None:
    # Changing the hash reshuffles every running experiment: these values must never change.
    assert bucket_of(salt, unit) == bucket
    digest = blake2b(f"{salt}\0{unit}".encode("utf-8", "surrogatepass")).digest()
    assert int.from_bytes(digest[:8], "big") % 10_000 == bucket  # the documented formula


def test_buckets_are_the_same_in_a_process_with_another_hash_seed() -> None:
    keys = [(salt, f"unit-{i}") for salt in ("exp-1", "exp-2") for i in range(200)]
    script = (
        "import json, sys\n"
        "from shipyard.core.assignment import Allocation, bucket_of\n"
        "keys = json.load(sys.stdin)\n"
        "allocation = Allocation(['a', 'b', 'c'], [0.2, 0.3, 0.5])\n"
        "print(json.dumps([[bucket_of(s, u), allocation.assign(s, u)] for s, u in keys]))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    allocation = Allocation(["a", "b", "c"], [0.2, 0.3, 0.5])
    here = [[bucket_of(s, u), allocation.assign(s, u)] for s, u in keys]
    assert json.loads(child.stdout) == here


def test_buckets_are_uniform() -> None:
    # 200,000 keys into 10,000 buckets: 20 expected per bucket, chi-square with 9,999 df.
    counts = Counter(bucket_of("uniformity", f"unit-{i}") for i in range(200_000))
    observed = [counts[bucket] for bucket in range(BUCKETS)]
    assert stats.chisquare(observed).pvalue > 0.001


def test_salt_separates_experiments() -> None:
    # Two salts must give independent buckets: the share of 20,000 units whose buckets agree
    # within 10% of the space is 0.2 ± binomial noise (99.9% interval).
    n = 20_000
    close = sum(
        (bucket_of("exp-a", f"u{i}") - bucket_of("exp-b", f"u{i}")) % BUCKETS < BUCKETS // 10
        for i in range(n)
    )
    low, high = stats.binom.interval(0.999, n, 0.1)
    assert low <= close <= high


# ------------------------------------------------------------------ stickiness
@given(salt=salts, unit=units, k=st.integers(1, 5), data=st.data())
def test_same_unit_same_variant_across_allocation_objects(
    salt: str, unit: str, k: int, data: st.DataObject
) -> None:
    variants = [f"v{i}" for i in range(k)]
    weights = [1 / k] * k
    first = Allocation(list(variants), list(weights))
    second = Allocation(tuple(variants), tuple(weights))
    assert first.assign(salt, unit) == second.assign(salt, unit) == first.assign(salt, unit)
    bandit_weights = data.draw(fractions(k))
    assert BanditAllocation(variants, bandit_weights).assign(salt, unit) == BanditAllocation(
        list(variants), list(bandit_weights)
    ).assign(salt, unit)


@settings(deadline=None, max_examples=60)
@given(ramp=ramps(), keys=st.lists(units, max_size=50))
def test_ramp_up_keeps_earlier_assignments(
    ramp: tuple[list[str], list[float], list[list[float]]], keys: list[str]
) -> None:
    variants, lanes, steps = ramp
    allocations = [Allocation(variants, weights, lanes=lanes) for weights in steps]
    for before, after in itertools.pairwise(allocations):
        for old, new in zip(layout(before), layout(after), strict=True):
            if old != "control":
                assert new == old  # a unit in a non-control variant stays there
            if new == "control":
                assert old == "control"  # units left in control were in control
        for key in keys:
            if before.assign("ramp", key) != "control":
                assert after.assign("ramp", key) == before.assign("ramp", key)


@settings(deadline=None, max_examples=60)
@given(k=st.integers(2, 5), data=st.data())
def test_a_variant_whose_weight_does_not_shrink_keeps_its_units(
    k: int, data: st.DataObject
) -> None:
    # Any change at all, rollbacks of other variants included: every variant's buckets are a
    # prefix of its lane, so they are nested between any two allocations.
    variants = ["control", *(f"v{i}" for i in range(1, k))]
    lanes = [1 / (k - 1)] * (k - 1)
    allocations = []
    for _ in range(2):
        filled = data.draw(st.lists(st.floats(0, 1), min_size=k - 1, max_size=k - 1))
        treatment = [lane * f for lane, f in zip(lanes, filled, strict=True)]
        allocations.append(Allocation(variants, [max(0.0, 1 - math.fsum(treatment)), *treatment]))
    before, after = allocations
    old_layout, new_layout = layout(before), layout(after)
    for i, name in enumerate(variants[1:], start=1):
        old = {b for b, v in enumerate(old_layout) if v == name}
        new = {b for b, v in enumerate(new_layout) if v == name}
        if after.weights[i] >= before.weights[i]:
            assert old <= new
        else:
            assert new <= old


def test_canary_ramp_keeps_the_first_five_percent() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    canary = Allocation(["stable", "canary"], [0.95, 0.05])
    seen: set[str] = set()
    for share, buckets in [(0.05, 500), (0.25, 2_500), (0.5, 5_000), (1.0, 10_000)]:
        canary = canary.with_weights([1 - share, share])
        assert layout(canary).count("canary") == buckets
        now = {key for key in keys if canary.assign("churn-canary", key) == "canary"}
        assert seen <= now
        seen = now
    assert seen == set(keys)
    rolled_back = canary.with_weights([1.0, 0.0])
    assert {rolled_back.assign("churn-canary", key) for key in keys} == {"stable"}


@given(k=st.integers(2, 5), data=st.data())
def test_bucket_counts_match_the_weights(k: int, data: st.DataObject) -> None:
    # A non-control variant owns round(weight / lane × lane size) buckets, and the lane size is
    # off lane × 10,000 by at most 1: at most 1.5 buckets off weight × 10,000; control takes
    # the rest.
    lanes = data.draw(fractions(k - 1, positive=True))
    treatment = [
        lane * f
        for lane, f in zip(
            lanes, data.draw(st.lists(st.floats(0, 1), min_size=k - 1, max_size=k - 1)), strict=True
        )
    ]
    weights = [max(0.0, 1 - math.fsum(treatment)), *treatment]
    allocation = Allocation([f"v{i}" for i in range(k)], weights, lanes=lanes)
    counts = Counter(layout(allocation))
    for name, weight in zip(allocation.variants[1:], weights[1:], strict=True):
        assert abs(counts[name] - weight * BUCKETS) <= 1.5
    assert abs(counts["v0"] - weights[0] * BUCKETS) <= 1.5 * (k - 1)


# ------------------------------------------------------------------ the observed split
@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([0.5, 0.5], id="50-50"),
        pytest.param([0.95, 0.05], id="canary-5"),
        pytest.param([0.2, 0.3, 0.5], id="three-way"),
        pytest.param([0.1, 0.3, 0.3, 0.3], id="four-way"),
    ],
)
def test_observed_split_is_within_binomial_tolerance(weights: list[float]) -> None:
    n = 100_000
    allocation = Allocation([f"v{i}" for i in range(len(weights))], weights)
    counts = Counter(allocation.assign("split", f"unit-{i}") for i in range(n))
    for name, weight in zip(allocation.variants, weights, strict=True):
        # Bucket rounding moves a share by <= 1.5e-4 per variant, under a tenth of the binomial
        # sd (>= 6.9e-4 here), so the interval is taken at the configured weight.
        low, high = stats.binom.interval(0.999, n, weight)
        assert low <= counts[name] <= high, (name, counts[name], low, high)
    observed = [counts[name] for name in allocation.variants]
    assert stats.chisquare(observed, [w * n for w in weights]).pvalue > 0.001


def test_draw_splits_uniform_draws_by_the_exact_weights() -> None:
    allocation = Allocation(["a", "b", "c", "d"], [0.3766, 0.0, 0.1234, 0.5], lanes=[0.1, 0.3, 0.6])
    n = 100_000
    # Evenly spaced draws: each variant gets its weight's share of the grid to within one point.
    counts = Counter(allocation.draw((i + 0.5) / n) for i in range(n))
    assert counts["b"] == 0
    for name, weight in zip(allocation.variants, allocation.weights, strict=True):
        assert abs(counts[name] - weight * n) <= 1
    # Seeded random draws: within the 99.9% binomial interval.
    rng = random.Random(7)
    counts = Counter(allocation.draw(rng.random()) for _ in range(n))
    for name, weight in zip(allocation.variants, allocation.weights, strict=True):
        low, high = stats.binom.interval(0.999, n, weight)
        assert low <= counts[name] <= high


def test_zero_weight_variants_are_never_drawn_at_the_edges() -> None:
    first_empty = Allocation(["a", "b", "c"], [0.0, 0.5, 0.5])
    assert first_empty.draw(0.0) == "b"
    assert first_empty.draw(math.nextafter(1.0, 0.0)) == "c"
    assert set(layout(first_empty)) == {"b", "c"}
    last_empty = Allocation(["a", "b", "c"], [0.5, 0.5, 0.0])
    assert last_empty.draw(math.nextafter(1.0, 0.0)) == "b"
    assert set(layout(last_empty)) == {"a", "b"}


# ------------------------------------------------------------------ bandit layout
@given(k=st.integers(1, 6), data=st.data())
def test_bandit_buckets_match_the_weights(k: int, data: st.DataObject) -> None:
    weights = data.draw(fractions(k))
    allocation = BanditAllocation([f"arm{i}" for i in range(k)], weights)
    counts = Counter(layout(allocation))
    for name, weight in zip(allocation.variants, weights, strict=True):
        assert abs(counts[name] - weight * BUCKETS) <= 1  # midpoints in an interval
        if weight == 0:
            assert counts[name] == 0


@settings(deadline=None)
@given(k=st.integers(2, 6), data=st.data())
def test_a_bandit_recomputation_moves_few_units(k: int, data: st.DataObject) -> None:
    # The documented bound: at most sum over the k - 1 inner boundaries of |moved| × 10,000 + 1
    # buckets change arm, which is <= (k - 1) × TV × 10,000 + k - 1; any layout moves >= TV.
    names = [f"arm{i}" for i in range(k)]
    old_weights, new_weights = data.draw(fractions(k)), data.draw(fractions(k))
    old = layout(BanditAllocation(names, old_weights))
    new = layout(BanditAllocation(names, new_weights))
    moved = sum(a != b for a, b in zip(old, new, strict=True))
    shifts = [abs(math.fsum(old_weights[:j]) - math.fsum(new_weights[:j])) for j in range(1, k)]
    tv = 0.5 * math.fsum(abs(a - b) for a, b in zip(old_weights, new_weights, strict=True))
    assert moved <= math.fsum(shift * BUCKETS + 1 for shift in shifts)
    assert moved <= (k - 1) * tv * BUCKETS + k - 1
    assert moved >= tv * BUCKETS - k


def test_bandit_draw_follows_the_weights() -> None:
    allocation = BanditAllocation(["a", "b", "c"], [0.25, 0.0, 0.75])
    assert allocation.draw(0.0) == "a"
    assert allocation.draw(0.25) == "c"
    assert allocation.draw(math.nextafter(1.0, 0.0)) == "c"


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("variants", "weights", "lanes", "field", "words"),
    [
        pytest.param([], [], None, "variants", ["at least one"], id="no-variants"),
        pytest.param(["a", "a"], [0.5, 0.5], None, "variants", ["unique", "'a'"], id="duplicate"),
        pytest.param(["a", ""], [0.5, 0.5], None, "variants", ["non-empty"], id="empty-name"),
        pytest.param(["a", "b"], [1.0], None, "weights", ["1 weights", "2 variants"], id="count"),
        pytest.param(["a", "b"], [0.5, -0.1], None, "weights", ["'b'", "-0.1"], id="negative"),
        pytest.param(["a", "b"], [0.5, math.nan], None, "weights", ["'b'", "nan"], id="nan"),
        pytest.param(["a", "b"], [0.5, "0.5"], None, "weights", ["'b'", "'0.5'"], id="string"),
        pytest.param(["a", "b"], [0.5, True], None, "weights", ["'b'", "True"], id="bool"),
        pytest.param(
            ["a", "b"], [0.5, 0.4], None, "weights", ["sum to 1", "a=0.5", "b=0.4"], id="sum"
        ),
        pytest.param(
            ["a", "b", "c"],
            [0.2, 0.7, 0.1],
            None,
            "weights",
            ["'b'", "0.7", "lane of 0.5"],
            id="over-lane",
        ),
        pytest.param(
            ["a", "b", "c"], [0.4, 0.3, 0.3], [1.0], "lanes", ["one lane", "2"], id="lanes-count"
        ),
        pytest.param(
            ["a", "b", "c"], [0.4, 0.3, 0.3], [0.6, 0.6], "lanes", ["sum to 1"], id="lanes-sum"
        ),
        pytest.param(
            ["a", "b", "c"], [0.4, 0.3, 0.3], [1.0, 0.0], "lanes", ["(0, 1]"], id="lane-zero"
        ),
    ],
)
def test_invalid_allocations_are_rejected_naming_the_field(
    variants: list[str],
    weights: list[float],
    lanes: list[float] | None,
    field: str,
    words: list[str],
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Allocation(variants, weights, lanes=lanes)
    assert caught.value.field == field
    for word in words:
        assert word in caught.value.message


def test_lanes_make_room_for_a_large_variant() -> None:
    allocation = Allocation(["a", "b", "c"], [0.2, 0.7, 0.1], lanes=[0.8, 0.2])
    assert Counter(layout(allocation)) == {"a": 2_000, "b": 7_000, "c": 1_000}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda a: a.assign("bad\0salt", "u"), "salt", id="nul-salt"),
        pytest.param(lambda a: a.draw(1.0), "u", id="u-one"),
        pytest.param(lambda a: a.draw(-0.1), "u", id="u-negative"),
        pytest.param(lambda a: a.variant_at(BUCKETS), "bucket", id="bucket-high"),
        pytest.param(lambda a: a.variant_at(-1), "bucket", id="bucket-negative"),
    ],
)
def test_invalid_calls_are_rejected_naming_the_field(
    call: Callable[[Allocation | BanditAllocation], object], field: str
) -> None:
    for allocation in (
        Allocation(["a", "b"], [0.5, 0.5]),
        BanditAllocation(["a", "b"], [0.5, 0.5]),
    ):
        with pytest.raises(InvalidInput) as caught:
            call(allocation)
        assert caught.value.field == field


def test_bandit_weights_are_validated() -> None:
    with pytest.raises(InvalidInput, match="sum to 1") as caught:
        BanditAllocation(["a", "b"], [0.6, 0.6])
    assert caught.value.field == "weights"
