"""Sticky assignment: a unit's bucket, and the variant or bandit arm that owns the bucket.

**The hash** (stable forever; ``tests/test_assignment.py`` pins known values)::

    digest = blake2b(f"{salt}\\0{unit}".encode("utf-8", "surrogatepass")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000

that is BLAKE2b-512 (hashlib's default digest size: asking for an 8-byte digest instead changes
the hash, and costs more in CPython), its first 8 bytes as a big-endian unsigned integer, modulo
:data:`BUCKETS`; the bias of that reduction is below 1e-15. The salt names the experiment and may
not contain NUL, so that (salt, unit) pairs never collide.
Nothing here reads Python's ``hash()``, so a unit gets the same bucket in every process.

**Fixed splits and ramps** (:class:`Allocation`). The first variant is control. The bucket space
is cut once into fixed *lanes*, one per non-control variant (equal by default; ``lanes`` sets
other sizes), and variant ``i`` owns the first ``round(weight_i / lane_i × lane size)`` buckets
of its own lane; every bucket no variant owns is control's. So a variant's buckets only grow or
shrink at the end of its lane and never depend on another variant's weight:

- a unit in a non-control variant stays there while that variant's weight does not shrink,
  whatever the other weights do (canary 5% → 25% → 50% → 100% keeps the first 5%);
- when weights only move from control to the others, a unit that is in control afterwards was in
  control before (control's buckets only shrink).

Limits: a non-control variant can reach at most its lane (``1 / (k - 1)`` by default, so 100%
with two variants, 50% each with three); an allocation that asks for more is rejected, and
``lanes`` must then be sized for the largest weight each variant will reach. The guarantees hold
between allocations with the same variants and lanes: adding or removing a variant, or changing
lanes, re-cuts the space (start such an experiment with a new salt). Sticky weights are
realised in whole buckets: each non-control variant within 1.5 buckets (0.015%) of its weight.

**Bandits** (:class:`BanditAllocation`). Arms have no control, and a bandit moves weight between
any arms, so its buckets are laid out cumulatively: arm ``i`` owns the buckets whose midpoint
``(bucket + 0.5) / 10_000`` falls in ``[w_0 + … + w_{i-1}, w_0 + … + w_i)``. A sticky unit keeps
its arm only until a recomputed allocation moves a boundary across its bucket: one
recomputation moves at most ``(k - 1) × TV`` of the units (TV, the total-variation distance
between the two weight vectors, is the least any layout must move), plus ``k - 1`` buckets.

Without a unit key, ``draw(u)`` picks by the exact weights from a uniform draw ``u`` in [0, 1)
that the caller supplies (this module holds no random state).
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from struct import Struct

from shipyard.errors import InvalidInput

BUCKETS = 10_000
"""Number of buckets a unit key is hashed into."""

TOLERANCE = 1e-6
"""How far weights (and lanes) may sum from 1, and a weight may exceed its lane."""

_FIRST_8_BYTES = Struct(">Q")  # a big-endian unsigned 64-bit integer
_MIDPOINTS = tuple((bucket + 0.5) / BUCKETS for bucket in range(BUCKETS))


def bucket_of(salt: str, unit: str) -> int:
    """The bucket in ``[0, BUCKETS)`` of ``unit`` in the experiment salted with ``salt``."""
    if "\0" in salt:
        raise InvalidInput(f"the salt may not contain NUL, got {salt!r}", field="salt")
    digest = blake2b(f"{salt}\0{unit}".encode("utf-8", "surrogatepass")).digest()
    number: int = _FIRST_8_BYTES.unpack_from(digest)[0]
    return number % BUCKETS


class _BucketTable:
    """Variants, their weights and the variant owning each bucket (subclasses lay it out)."""

    variants: tuple[str, ...]
    weights: tuple[float, ...]
    _cumulative: tuple[float, ...]
    _table: tuple[str, ...]

    def variant_at(self, bucket: int) -> str:
        """The variant that owns ``bucket``."""
        if not 0 <= bucket < BUCKETS:
            raise InvalidInput(f"bucket must be in [0, {BUCKETS}), got {bucket}", field="bucket")
        return self._table[bucket]

    def assign(self, salt: str, unit: str) -> str:
        """The sticky variant of ``unit`` (see the module docstring for what keeps it)."""
        return self._table[bucket_of(salt, unit)]

    def draw(self, u: float) -> str:
        """A per-request variant from a uniform draw ``u`` in [0, 1), by the exact weights."""
        return self.variants[_pick(self._cumulative, u)]


class Allocation(_BucketTable):
    """Variants (control first) with traffic weights, laid out so that ramps never reshuffle.

    ``weights`` are fractions summing to 1; ``lanes`` are the fixed fractions of the bucket space
    reserved for each non-control variant (``k - 1`` of them, summing to 1; equal by default).
    """

    def __init__(
        self,
        variants: Sequence[str],
        weights: Sequence[float],
        *,
        lanes: Sequence[float] | None = None,
    ) -> None:
        self.variants = _check_variants(variants)
        self.weights = _check_weights(self.variants, weights)
        treatments = len(self.variants) - 1
        self.lanes = (
            tuple(1.0 / treatments for _ in range(treatments))
            if lanes is None
            else _check_lanes(lanes, treatments)
        )
        self._cumulative = _cumulative(self.weights)
        self._table = self._layout()

    def _layout(self) -> tuple[str, ...]:
        table = [self.variants[0]] * BUCKETS
        start, lane_total = 0, 0.0
        for name, weight, lane in zip(self.variants[1:], self.weights[1:], self.lanes, strict=True):
            if weight > lane + TOLERANCE:
                raise InvalidInput(
                    f"variant {name!r} has weight {weight}, more than its lane of {lane} of the "
                    f"buckets (lanes={list(self.lanes)}); pass lanes sized for the largest weight "
                    "each variant will reach",
                    field="weights",
                )
            lane_total += lane
            end = BUCKETS if lane_total >= 1.0 - TOLERANCE else round(lane_total * BUCKETS)
            size = end - start
            owned = min(size, int(weight / lane * size + 0.5))
            table[start : start + owned] = [name] * owned
            start = end
        return tuple(table)

    def with_weights(self, weights: Sequence[float]) -> Allocation:
        """The same variants and lanes with new weights (a ramp step or a rollback)."""
        return Allocation(self.variants, weights, lanes=self.lanes)

    def __repr__(self) -> str:
        return f"Allocation({list(self.variants)}, {list(self.weights)}, lanes={list(self.lanes)})"


class BanditAllocation(_BucketTable):
    """Bandit arms with weights (a policy's allocation), laid out cumulatively over the buckets;
    ``assign`` is sticky only until a new allocation moves the unit's bucket."""

    def __init__(self, variants: Sequence[str], weights: Iterable[float]) -> None:
        self.variants = _check_variants(variants)
        self.weights = _check_weights(self.variants, [float(w) for w in weights])
        self._cumulative = _cumulative(self.weights)
        table: list[str] = []
        for name, end in zip(self.variants, self._cumulative, strict=True):
            first_after = bisect_left(_MIDPOINTS, end)  # buckets whose midpoint is below ``end``
            table += [name] * (first_after - len(table))
        self._table = tuple(table)

    def __repr__(self) -> str:
        return f"BanditAllocation({list(self.variants)}, {list(self.weights)})"


def _check_variants(variants: Sequence[str]) -> tuple[str, ...]:
    names = tuple(variants)
    if not names:
        raise InvalidInput("at least one variant is needed, got none", field="variants")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInput(
                f"variant names must be non-empty strings, got {name!r}", field="variants"
            )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(
            f"variant names must be unique, repeated: {duplicates}", field="variants"
        )
    return names


def _check_weights(variants: tuple[str, ...], weights: Sequence[float]) -> tuple[float, ...]:
    values = tuple(weights)
    if len(values) != len(variants):
        raise InvalidInput(
            f"got {len(values)} weights for {len(variants)} variants {list(variants)}",
            field="weights",
        )
    for name, weight in zip(variants, values, strict=True):
        if not _is_number(weight) or not 0.0 <= weight <= 1.0:
            raise InvalidInput(
                f"the weight of variant {name!r} must be a number in [0, 1], got {weight!r}",
                field="weights",
            )
    total = math.fsum(values)
    if abs(total - 1.0) > TOLERANCE:
        listed = ", ".join(
            f"{name}={weight}" for name, weight in zip(variants, values, strict=True)
        )
        raise InvalidInput(f"weights must sum to 1, got {total} ({listed})", field="weights")
    return tuple(float(weight) for weight in values)


def _check_lanes(lanes: Sequence[float], treatments: int) -> tuple[float, ...]:
    values = tuple(lanes)
    if len(values) != treatments:
        raise InvalidInput(
            f"need one lane per non-control variant ({treatments}), got {len(values)}",
            field="lanes",
        )
    for lane in values:
        if not _is_number(lane) or not 0.0 < lane <= 1.0:
            raise InvalidInput(f"lanes must be numbers in (0, 1], got {lane!r}", field="lanes")
    if abs(math.fsum(values) - 1.0) > TOLERANCE:
        raise InvalidInput(f"lanes must sum to 1, got {math.fsum(values)}", field="lanes")
    return tuple(float(lane) for lane in values)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    """Running sums, exactly 1.0 from the last positive weight on (so it is always picked)."""
    last = max(i for i, weight in enumerate(weights) if weight > 0.0)
    running, sums = 0.0, []
    for i, weight in enumerate(weights):
        running += weight
        sums.append(1.0 if i >= last else running)
    return tuple(sums)


def _pick(cumulative: tuple[float, ...], u: float) -> int:
    if not 0.0 <= u < 1.0:
        raise InvalidInput(f"u must be a uniform draw in [0, 1), got {u!r}", field="u")
    return bisect_right(cumulative, u)
