r"""Validation of new data against a :class:`~shipyard.core.profile.Profile`.

:func:`validate` checks a whole table (materialised features, a training set, a window of
predictions) and returns a :class:`ValidationReport` listing every violated expectation;
:class:`Validator` is the same check compiled once for per-request NumPy columns on the server.
Both share one judging step, so for the same data they report identical :class:`Violation`\ s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.profile import (
    ColumnProfile,
    Kind,
    Profile,
    arrow_kind,
    as_table,
    decoded,
    numeric_values,
)
from shipyard.errors import InvalidInput

Code = Literal[
    "missing_column",
    "type",
    "unexpected_null",
    "null_rate",
    "unexpected_nan",
    "unexpected_inf",
    "out_of_range",
    "unseen_category",
]
Detail = str | int | float | tuple[float, float] | tuple[str, ...] | None


# ---------------------------------------------------------------- expectations
@dataclass(frozen=True)
class Expectations:
    """What new data must satisfy against a reference profile; every rule is on by default.

    Always checked: every profiled column is present (``missing_column``) and its type has the
    reference's kind (``type``: int, uint and float are interchangeable; a string column for a
    numeric one is not; an all-null column fits any kind). A column failing ``type`` is not
    checked further. Columns that the profile does not know are ignored.

    - ``forbid_unseen_nulls`` (True): a null in a column whose reference had none →
      ``unexpected_null``.
    - ``null_rate_tolerance`` (0.05): the null rate may exceed the reference's by this much
      (absolute) before ``null_rate`` fires — only for batches of at least
      ``min_rows_for_rates`` (100) rows, as a rate over a handful of rows means nothing (below
      that, only ``unexpected_null`` applies). With ``forbid_unseen_nulls=False`` a column whose
      reference had no nulls gets this rate check (0 + tolerance) instead.
    - ``forbid_unseen_nan`` / ``forbid_unseen_inf`` (True): NaN / ±inf in a numeric column whose
      reference had none → ``unexpected_nan`` / ``unexpected_inf``.
    - ``range_margin`` (0.1): finite numeric values must lie in the reference ``[min, max]``
      widened on each side by this fraction of ``max - min`` (None: no range check; a constant
      reference column allows only its value); ``out_of_range`` fires when the fraction of rows
      outside exceeds ``max_out_of_range_fraction`` (0.0: any row outside).
    - ``forbid_unseen_categories`` (True): a categorical value the reference did not have →
      ``unseen_category``, only when the reference listed every category (distinct count ≤
      ``max_categories``); the first ``max_unseen_examples`` (5) distinct ones are reported.
    - ``per_column``: other expectations for named columns (their own ``per_column`` is ignored).
    """

    forbid_unseen_nulls: bool = True
    null_rate_tolerance: float = 0.05
    min_rows_for_rates: int = 100
    forbid_unseen_nan: bool = True
    forbid_unseen_inf: bool = True
    range_margin: float | None = 0.1
    max_out_of_range_fraction: float = 0.0
    forbid_unseen_categories: bool = True
    max_unseen_examples: int = 5
    per_column: Mapping[str, Expectations] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("null_rate_tolerance", "range_margin", "max_out_of_range_fraction"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InvalidInput(f"{name} must be a number >= 0, got {value!r}", field=name)
        for name in ("min_rows_for_rates", "max_unseen_examples"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0, got {getattr(self, name)}", field=name)

    def for_column(self, name: str) -> Expectations:
        return self.per_column.get(name, self)


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed expectation. ``count`` rows of the ``rows`` checked offend; ``expected`` and
    ``observed`` are JSON-able details (per code: a rate, a count, a range, example values)."""

    column: str
    code: Code
    expected: Detail
    observed: Detail
    count: int
    rows: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "code": self.code,
            "expected": list(self.expected) if isinstance(self.expected, tuple) else self.expected,
            "observed": list(self.observed) if isinstance(self.observed, tuple) else self.observed,
            "count": self.count,
            "rows": self.rows,
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass(slots=True)
class _Counts:
    rows: int
    nulls: int = 0
    nans: int = 0
    infs: int = 0
    out_of_range: int = 0
    observed_range: tuple[float, float] | None = None
    unseen: int = 0
    unseen_examples: tuple[str, ...] = ()


class _Rule:
    """One column's expectations, resolved against its reference once."""

    __slots__ = (
        "allowed",
        "expect",
        "high",
        "kind",
        "low",
        "max_null_rate",
        "name",
        "ref",
        "reference_inf",
        "reference_nan",
        "reference_nulls",
    )

    def __init__(self, ref: ColumnProfile, expect: Expectations) -> None:
        self.ref = ref
        self.name = ref.name
        self.kind = ref.kind
        self.expect = expect
        self.reference_nulls = ref.null_count > 0
        self.max_null_rate = ref.null_rate + expect.null_rate_tolerance
        self.reference_nan = ref.nan_count > 0
        self.reference_inf = ref.inf_count > 0
        self.low: float = -math.inf
        self.high: float = math.inf
        if expect.range_margin is not None and ref.min is not None and ref.max is not None:
            widen = expect.range_margin * (float(ref.max) - float(ref.min))
            self.low, self.high = float(ref.min) - widen, float(ref.max) + widen
        self.allowed: frozenset[str] | None = None
        if expect.forbid_unseen_categories and ref.categories_complete:
            self.allowed = frozenset(v for v, _ in ref.categories)

    @property
    def checks_range(self) -> bool:
        return self.low != -math.inf or self.high != math.inf

    def violation(
        self, code: Code, expected: Detail, observed: Detail, count: int, rows: int, what: str
    ) -> Violation:
        message = f"column {self.name!r} fails {code}: {what}"
        return Violation(self.name, code, expected, observed, count, rows, message)

    def missing(self, rows: int) -> Violation:
        return self.violation(
            "missing_column", "present", "missing", rows, rows, "the column is missing"
        )

    def wrong_type(self, observed: str, rows: int) -> Violation:
        expected = f"{self.kind} ({self.ref.dtype})"
        return self.violation(
            "type", expected, observed, rows, rows, f"expected {expected}, got {observed}"
        )

    def judge(self, c: _Counts) -> list[Violation]:
        """The violations shown by one column's counts (the same for tables and arrays)."""
        expect, rows, out = self.expect, c.rows, list[Violation]()
        add = out.append
        if c.nulls and not self.reference_nulls and expect.forbid_unseen_nulls:
            what = f"{c.nulls} of {rows} rows are null; the reference had no nulls"
            add(self.violation("unexpected_null", 0, c.nulls, c.nulls, rows, what))
        elif rows and rows >= expect.min_rows_for_rates and c.nulls / rows > self.max_null_rate:
            rate = c.nulls / rows
            what = (
                f"null rate {rate:.4g} ({c.nulls} of {rows} rows) is above {self.max_null_rate:.4g}"
                f" (reference {self.ref.null_rate:.4g} + tolerance {expect.null_rate_tolerance:g})"
            )
            add(self.violation("null_rate", self.max_null_rate, rate, c.nulls, rows, what))
        if c.nans and not self.reference_nan and expect.forbid_unseen_nan:
            what = f"{c.nans} of {rows} values are NaN; the reference had none"
            add(self.violation("unexpected_nan", 0, c.nans, c.nans, rows, what))
        if c.infs and not self.reference_inf and expect.forbid_unseen_inf:
            what = f"{c.infs} of {rows} values are infinite; the reference had none"
            add(self.violation("unexpected_inf", 0, c.infs, c.infs, rows, what))
        if c.out_of_range and c.out_of_range / rows > expect.max_out_of_range_fraction:
            what = (
                f"{c.out_of_range} of {rows} values lie outside [{self.low:.6g}, {self.high:.6g}]"
                f" (reference [{self.ref.min}, {self.ref.max}] widened by "
                f"{cast(float, expect.range_margin):.0%} of its range); observed finite range "
                f"{_format_range(c.observed_range)}"
            )
            bounds, seen = (self.low, self.high), c.observed_range
            add(self.violation("out_of_range", bounds, seen, c.out_of_range, rows, what))
        if c.unseen:
            known = len(self.allowed or ())
            what = (
                f"{c.unseen} of {rows} values are not among the reference's {known} categories, "
                f"e.g. {', '.join(repr(v) for v in c.unseen_examples)}"
            )
            expected, seen_values = f"one of {known} reference values", c.unseen_examples
            add(self.violation("unseen_category", expected, seen_values, c.unseen, rows, what))
        return out

    def numeric_counts(self, values: np.ndarray[Any, Any], rows: int, nulls: int) -> _Counts:
        """Counts over the non-null numeric ``values`` of a column of ``rows`` rows."""
        nans = infs = out_of_range = 0
        if values.dtype.kind == "f":
            finite_mask = np.isfinite(values)
            finite_count = int(np.count_nonzero(finite_mask))
            if finite_count < len(values):
                nans = int(np.count_nonzero(np.isnan(values)))
                infs = len(values) - finite_count - nans
        observed: tuple[float, float] | None = None
        if self.checks_range:
            below = int(np.count_nonzero(values < self.low))
            above = int(np.count_nonzero(values > self.high))
            if infs:
                below -= int(np.count_nonzero(values == -math.inf))
                above -= int(np.count_nonzero(values == math.inf))
            out_of_range = below + above
            if out_of_range:
                finite = values[np.isfinite(values)] if nans or infs else values
                observed = (float(finite.min()), float(finite.max()))
        return _Counts(rows, nulls, nans, infs, out_of_range, observed)

    def unseen_counts(self, values: Sequence[str], rows: int, nulls: int) -> _Counts:
        """Counts over the non-null category ``values`` (in row order) of a small batch."""
        allowed, unseen, examples = self.allowed, 0, list[str]()
        if allowed is not None:
            for value in values:
                if value not in allowed:
                    unseen += 1
                    if value not in examples and len(examples) < self.expect.max_unseen_examples:
                        examples.append(value)
        return _Counts(rows, nulls, unseen=unseen, unseen_examples=tuple(examples))


def _format_range(observed: tuple[float, float] | None) -> str:
    return "none" if observed is None else f"[{observed[0]:.6g}, {observed[1]:.6g}]"


def _rules(profile: Profile, expectations: Expectations | None) -> list[_Rule]:
    expect = expectations or Expectations()
    return [_Rule(ref, expect.for_column(ref.name)) for ref in profile.columns]


# ---------------------------------------------------------------- validating a table
def validate(
    data: pa.Table | pd.DataFrame,
    profile: Profile,
    *,
    expectations: Expectations | None = None,
) -> ValidationReport:
    """Check ``data`` against ``profile``; the report lists every violated expectation, in profile
    column order. Vectorised with Arrow compute and NumPy (one column's copy at a time)."""
    table = as_table(data)
    rows, violations = table.num_rows, []
    for rule in _rules(profile, expectations):
        if rule.name not in table.column_names:
            violations.append(rule.missing(rows))
            continue
        column = table.column(rule.name)
        kind = arrow_kind(column.type)
        if kind is not None and rule.kind != "other" and kind != rule.kind:
            violations.append(rule.wrong_type(str(column.type), rows))
            continue
        nulls = column.null_count
        if kind == "numeric":
            counts = rule.numeric_counts(numeric_values(column), rows, nulls)
        elif kind == "categorical" and rule.allowed is not None:
            counts = _table_unseen_counts(rule, column, rows, nulls)
        else:
            counts = _Counts(rows, nulls)
        violations.extend(rule.judge(counts))
    return ValidationReport(rows, violations)


def _table_unseen_counts(rule: _Rule, column: pa.ChunkedArray, rows: int, nulls: int) -> _Counts:
    present = decoded(column).drop_null()
    allowed = pa.array(sorted(rule.allowed or ()), type=present.type)
    unseen = present.filter(pc.invert(pc.is_in(present, value_set=allowed)))
    examples = pc.unique(unseen)[: rule.expect.max_unseen_examples].to_pylist()
    return _Counts(rows, nulls, unseen=len(unseen), unseen_examples=tuple(examples))


# ---------------------------------------------------------------- validating request arrays
_SMALL = 16  # batches up to this many rows are checked with plain Python (no NumPy call overhead)


class Validator:
    """:func:`validate` compiled once for per-request checks on NumPy columns.

    ``check`` takes the server's decoded columns (1-D arrays). NumPy has no null for numbers, so —
    as in pandas — NaN in a float array, NaT in a datetime64 array, and None or NaN in an object
    array count as nulls (``unexpected_nan`` therefore never fires here). Object arrays are
    accepted when their non-null values are of the column's kind (str for categorical; int/float
    for numeric; bool; datetime/date for timestamp). For the same data the violations equal those
    of :func:`validate` on the Arrow table.
    """

    def __init__(self, profile: Profile, expectations: Expectations | None = None) -> None:
        self.profile = profile
        self.expectations = expectations or Expectations()
        self._rules = _rules(profile, self.expectations)

    def check(self, columns: Mapping[str, np.ndarray[Any, Any]]) -> list[Violation]:
        rows = max((len(v) for v in columns.values()), default=0)
        out: list[Violation] = []
        for rule in self._rules:
            values = columns.get(rule.name)
            if values is None:
                out.append(rule.missing(rows))
                continue
            if values.ndim != 1:
                values = values.reshape(-1)
            counts = _array_counts(rule, values)
            if isinstance(counts, str):
                out.append(rule.wrong_type(counts, len(values)))
            elif counts.nulls or counts.nans or counts.infs or counts.out_of_range or counts.unseen:
                out.extend(rule.judge(counts))
        return out


def _array_counts(rule: _Rule, values: np.ndarray[Any, Any]) -> _Counts | str:
    """One column's counts, or the observed type's name when it does not fit the rule's kind."""
    dtype_kind, kind, rows = values.dtype.kind, rule.kind, len(values)
    if dtype_kind == "O":
        return _object_counts(rule, values.tolist())
    if kind == "numeric" and dtype_kind in "iuf":
        if rows <= _SMALL:
            return _small_numeric_counts(rule, values.tolist())
        nulls = int(np.count_nonzero(np.isnan(values))) if dtype_kind == "f" else 0
        present = values[~np.isnan(values)] if nulls else values
        return rule.numeric_counts(present, rows, nulls)
    if kind == "categorical" and dtype_kind == "U":
        return rule.unseen_counts(values.tolist(), rows, 0)
    if kind == "boolean" and dtype_kind == "b":
        return _Counts(rows)
    if kind == "timestamp" and dtype_kind == "M":
        return _Counts(rows, int(np.count_nonzero(np.isnat(values))))
    if kind == "other":
        nulls = 0
        if dtype_kind == "f":
            nulls = int(np.count_nonzero(np.isnan(values)))
        elif dtype_kind in "mM":
            nulls = int(np.count_nonzero(np.isnat(values)))
        return _Counts(rows, nulls)
    return str(values.dtype)


def _small_numeric_counts(rule: _Rule, values: list[Any]) -> _Counts:
    nulls = infs = out_of_range = 0
    low, high = rule.low, rule.high
    finite: list[float] = []
    for v in values:
        if v != v:
            nulls += 1
        elif v == math.inf or v == -math.inf:
            infs += 1
        else:
            finite.append(v)
            if v < low or v > high:
                out_of_range += 1
    observed = (float(min(finite)), float(max(finite))) if out_of_range else None
    return _Counts(len(values), nulls, 0, infs, out_of_range, observed)


_KIND_OF_VALUE: tuple[tuple[type | tuple[type, ...], Kind], ...] = (
    (bool, "boolean"),
    (np.bool_, "boolean"),
    (str, "categorical"),
    ((int, float, np.integer, np.floating, Decimal), "numeric"),
    ((datetime, date, np.datetime64, pd.Timestamp), "timestamp"),
)


def _value_kind(value: Any) -> Kind:
    for types, kind in _KIND_OF_VALUE:
        if isinstance(value, types):
            return kind
    return "other"


def _is_null(value: Any) -> bool:
    return (
        value is None
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and value != value)
        or (isinstance(value, np.datetime64) and bool(np.isnat(value)))
    )


def _object_counts(rule: _Rule, values: list[Any]) -> _Counts | str:
    present = [v for v in values if not _is_null(v)]
    nulls, rows = len(values) - len(present), len(values)
    if rule.kind != "other":
        for v in present:
            if _value_kind(v) != rule.kind:
                return f"object ({type(v).__name__})"
    if rule.kind == "numeric":
        if rows <= _SMALL:
            return _small_numeric_counts(rule, [*present, *([math.nan] * nulls)])
        return rule.numeric_counts(np.array(present, dtype=np.float64), rows, nulls)
    if rule.kind == "categorical":
        return rule.unseen_counts(present, rows, nulls)
    return _Counts(rows, nulls)
