"""Data profiles: per-column statistics of a reference table, one JSON format, and validation.

A :class:`Profile` summarises a reference table (a training set, a materialised feature view, a
model's reference data). The same format serves the feature store's validation and the monitoring
reference: new data is checked against it (:func:`validate`, or :class:`Validator` per request on
the server) and compared with it by binned drift statistics on ``bin_edges``.

Columns fall into a *kind* by their Arrow type:

==============  =========================================================================
kind            Arrow types
==============  =========================================================================
``numeric``     integers, floats, decimals (decimals are profiled as float64)
``boolean``     bool
``categorical`` string, large_string, string_view, and dictionaries of those
``timestamp``   timestamp (any unit, naive or with a time zone), date32, date64
``other``       anything else (binary, lists, structs, the all-null ``null`` type)
==============  =========================================================================

Nulls are Arrow nulls. A pandas DataFrame is converted with ``pa.Table.from_pandas``, which turns
NaN in float columns into nulls, so a profile of a DataFrame has ``nan_count == 0``; NaN is counted
separately only for Arrow data (Parquet, Arrow tables) that holds real NaN values.

Numeric statistics (``min``, ``max``, ``mean``, ``std``, ``quantiles``) are over the *finite*
values (nulls, NaN and ±inf excluded). ``quantiles`` are exact, NumPy's default ``linear`` method
(``np.quantile``), at :data:`QUANTILE_LEVELS`. The histogram has ``k`` finite, strictly increasing
``bin_edges`` — the distinct quantiles of the finite values at levels ``1/bins … (bins-1)/bins`` by
the inverted-CDF definition (``method="inverted_cdf"``: every edge is a value of the data, so a
discrete column gets one bin per value, not slivers between values) — and ``k + 1``
``bin_counts`` over every non-null, non-NaN value (±inf included)::

    [-inf, e1)  [e1, e2)  …  [e(k-1), ek)  [ek, +inf]

which is ``np.histogram(values, bins=[-inf, *bin_edges, inf])``. :func:`bin_counts` bins new data
on the same edges for drift statistics.
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

from shipyard.errors import InvalidInput

FORMAT_VERSION = 1
QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 50

Kind = Literal["numeric", "boolean", "categorical", "timestamp", "other"]
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

_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "numeric": (
        "nan_count",
        "inf_count",
        "min",
        "max",
        "mean",
        "std",
        "quantiles",
        "bin_edges",
        "bin_counts",
    ),
    "boolean": ("true_count", "false_count"),
    "categorical": ("distinct_count", "categories", "other_count"),
    "timestamp": ("earliest", "latest"),
    "other": (),
}


# ---------------------------------------------------------------- the format
@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """Statistics of one column. Fields not of the column's kind keep their defaults.

    All kinds:
      ``name``; ``kind`` (see the module docstring); ``dtype`` — the Arrow type as text
      (``double``, ``int64``, ``string``, ``timestamp[us, tz=UTC]``…); ``count`` — rows, nulls
      included; ``null_count`` — Arrow nulls.
    numeric:
      ``nan_count``, ``inf_count`` (both signs) — among the non-null values; ``min``, ``max`` (of
      the column's own type: int for integer columns), ``mean``, ``std`` (population, ddof=0) —
      over finite values, None when there are none (or when the float64 result overflows);
      ``quantiles`` — one per ``Profile.quantile_levels``, empty when there are no finite values;
      ``bin_edges`` and ``bin_counts`` — the histogram described in the module docstring
      (no finite values: no edges and one bin holding the ±inf values).
    boolean:
      ``true_count``, ``false_count``.
    categorical:
      ``distinct_count`` — distinct non-null values; ``categories`` — the most frequent values
      as ``(value, count)``, most frequent first, ties by value, at most ``max_categories``;
      ``other_count`` — non-null rows whose value is not listed. The listing is complete
      (:attr:`categories_complete`) when ``distinct_count == len(categories)``.
    timestamp:
      ``earliest``, ``latest`` — ISO 8601 text of the extreme values at the column's unit
      (``2024-05-01T12:00:00.000000``; with a ``Z`` suffix for time-zone-aware columns, which
      Arrow stores as UTC; a plain date for date32), None when every value is null.
    """

    name: str
    kind: Kind
    dtype: str
    count: int
    null_count: int
    nan_count: int = 0
    inf_count: int = 0
    min: int | float | None = None
    max: int | float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: tuple[float, ...] = ()
    bin_edges: tuple[float, ...] = ()
    bin_counts: tuple[int, ...] = ()
    true_count: int = 0
    false_count: int = 0
    distinct_count: int = 0
    categories: tuple[tuple[str, int], ...] = ()
    other_count: int = 0
    earliest: str | None = None
    latest: str | None = None

    @property
    def null_rate(self) -> float:
        return self.null_count / self.count if self.count else 0.0

    @property
    def categories_complete(self) -> bool:
        """Whether ``categories`` lists every value the reference had."""
        return self.kind == "categorical" and self.distinct_count == len(self.categories)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: the common keys, then the keys of the column's kind, in a fixed order."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "count": self.count,
            "null_count": self.null_count,
        }
        for key in _KIND_FIELDS[self.kind]:
            value = getattr(self, key)
            if key == "categories":
                value = [[v, c] for v, c in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        kind = _required(data, "kind", "column")
        if kind not in _KIND_FIELDS:
            raise InvalidInput(
                f"profile column kind {kind!r} is unknown; expected one of "
                f"{', '.join(_KIND_FIELDS)}",
                field="kind",
            )
        values: dict[str, Any] = {
            key: _required(data, key, "column") for key in ("name", "dtype", "count", "null_count")
        }
        for key in _KIND_FIELDS[kind]:
            value = _required(data, key, f"column {values['name']!r}")
            if key == "categories":
                value = tuple((str(v), int(c)) for v, c in value)
            elif key in ("quantiles", "bin_edges"):
                value = tuple(float(v) for v in value)
            elif key == "bin_counts":
                value = tuple(int(v) for v in value)
            values[key] = value
        return cls(kind=kind, **values)


@dataclass(frozen=True, slots=True)
class Profile:
    """A table's profile: ``num_rows``, one :class:`ColumnProfile` per column (in table order),
    and the parameters it was computed with (``quantile_levels``, ``bins``, ``max_categories``)."""

    num_rows: int
    columns: tuple[ColumnProfile, ...]
    quantile_levels: tuple[float, ...] = QUANTILE_LEVELS
    bins: int = DEFAULT_BINS
    max_categories: int = DEFAULT_MAX_CATEGORIES
    format_version: int = FORMAT_VERSION

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def find_column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (no NaN or infinity anywhere); ``from_dict`` gives back an equal profile."""
        return {
            "format_version": self.format_version,
            "num_rows": self.num_rows,
            "quantile_levels": list(self.quantile_levels),
            "bins": self.bins,
            "max_categories": self.max_categories,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        version = _required(data, "format_version", "profile")
        if version != FORMAT_VERSION:
            raise InvalidInput(
                f"profile format_version {version!r} is not supported; expected {FORMAT_VERSION}",
                field="format_version",
            )
        return cls(
            num_rows=int(_required(data, "num_rows", "profile")),
            columns=tuple(
                ColumnProfile.from_dict(c) for c in _required(data, "columns", "profile")
            ),
            quantile_levels=tuple(float(q) for q in _required(data, "quantile_levels", "profile")),
            bins=int(_required(data, "bins", "profile")),
            max_categories=int(_required(data, "max_categories", "profile")),
        )


def _required(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise InvalidInput(f"{where} is missing the field {key!r}", field=key)
    return data[key]


# ---------------------------------------------------------------- profiling
def arrow_kind(dtype: pa.DataType) -> Kind | None:
    """The profile kind of an Arrow type; None for the all-null ``null`` type (fits any kind)."""
    if pa.types.is_null(dtype):
        return None
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or _is_string_view(dtype):
        return "categorical"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "timestamp"
    return "other"


def _is_string_view(dtype: pa.DataType) -> bool:
    return bool(getattr(pa.types, "is_string_view", lambda _: False)(dtype))


def as_table(data: pa.Table | pd.DataFrame) -> pa.Table:
    """An Arrow table from a table or a pandas DataFrame (index dropped)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(
                f"the DataFrame cannot be converted to Arrow: {exc}", field="data"
            ) from exc
    raise InvalidInput(
        f"data must be a pyarrow.Table or a pandas DataFrame, got {type(data).__name__}",
        field="data",
    )


def profile_table(
    data: pa.Table | pd.DataFrame,
    *,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    bins: int = DEFAULT_BINS,
) -> Profile:
    """Profile every column of ``data``; extra memory is about two copies of one column."""
    if max_categories < 0:
        raise InvalidInput(
            f"max_categories must be >= 0, got {max_categories}", field="max_categories"
        )
    if bins < 1:
        raise InvalidInput(f"bins must be >= 1, got {bins}", field="bins")
    table = as_table(data)
    columns = tuple(
        _profile_column(name, table.column(i), max_categories, bins)
        for i, name in enumerate(table.column_names)
    )
    return Profile(table.num_rows, columns, QUANTILE_LEVELS, bins, max_categories)


def _profile_column(
    name: str, column: pa.ChunkedArray, max_categories: int, bins: int
) -> ColumnProfile:
    kind = arrow_kind(column.type) or "other"
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "dtype": str(column.type),
        "count": len(column),
        "null_count": column.null_count,
    }
    column = _decoded(column)
    if kind == "numeric":
        return ColumnProfile(**common, **_numeric_stats(column, bins))
    if kind == "boolean":
        trues = int(pc.sum(column).as_py() or 0)
        return ColumnProfile(
            **common, true_count=trues, false_count=len(column) - column.null_count - trues
        )
    if kind == "categorical":
        return ColumnProfile(**common, **_categorical_stats(column, max_categories))
    if kind == "timestamp":
        return ColumnProfile(**common, **_timestamp_stats(column))
    return ColumnProfile(**common)


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionaries decoded to their values; string views as large strings (for Arrow kernels)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if _is_string_view(column.type):
        column = column.cast(pa.large_string())
    return column


def _numeric_values(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """The non-null values as NumPy: integers as they are, floats and decimals as float64."""
    column = _decoded(column)
    if pa.types.is_decimal(column.type) or pa.types.is_floating(column.type):
        column = column.cast(pa.float64())
    values = column.drop_null()
    if values.num_chunks == 0:
        return np.empty(0, dtype=values.type.to_pandas_dtype())
    return np.asarray(values.combine_chunks().to_numpy(zero_copy_only=False))


def _numeric_stats(column: pa.ChunkedArray, bins: int) -> dict[str, Any]:
    values = _numeric_values(column)
    finite, nans, infs = _split_finite(values)
    non_nan = values if nans == 0 else values[~np.isnan(values)]
    if len(finite) == 0:
        return {"nan_count": nans, "inf_count": infs, "bin_counts": (len(non_nan),)}
    quantiles = np.quantile(finite, QUANTILE_LEVELS)
    inner = [j / bins for j in range(1, bins)]
    edges = np.unique(np.quantile(finite, inner, method="inverted_cdf")) if inner else np.empty(0)
    return {
        "nan_count": nans,
        "inf_count": infs,
        "min": finite.min().item(),
        "max": finite.max().item(),
        "mean": _finite_or_none(float(finite.mean(dtype=np.float64))),
        "std": _finite_or_none(float(finite.std(dtype=np.float64))),
        "quantiles": tuple(float(q) for q in quantiles),
        "bin_edges": tuple(float(e) for e in edges),
        "bin_counts": tuple(int(c) for c in bin_counts(non_nan, edges)),
    }


def _split_finite(values: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int, int]:
    """(finite values, NaN count, ±inf count) of non-null values."""
    if values.dtype.kind != "f":
        return values, 0, 0
    finite_mask = np.isfinite(values)
    finite_count = int(np.count_nonzero(finite_mask))
    if finite_count == len(values):
        return values, 0, 0
    nans = int(np.count_nonzero(np.isnan(values)))
    return values[finite_mask], nans, len(values) - finite_count - nans


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def bin_counts(
    values: np.ndarray[Any, Any], bin_edges: Sequence[float] | np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Counts of ``values`` in the ``k + 1`` bins cut by ``k`` increasing finite ``bin_edges``:
    ``[-inf, e1), [e1, e2), …, [ek, +inf]`` — ``np.histogram`` with ``-inf``/``+inf`` outer
    edges. NaN values are not counted; drop nulls before calling."""
    x = np.asarray(values)
    edges = np.asarray(bin_edges, dtype=np.float64)
    total = len(x) - (int(np.count_nonzero(np.isnan(x))) if x.dtype.kind == "f" else 0)
    at_or_above = np.array([np.count_nonzero(x >= e) for e in edges], dtype=np.int64)
    upper = np.concatenate(([total], at_or_above))
    lower = np.concatenate((at_or_above, [0]))
    return upper - lower


def _categorical_stats(column: pa.ChunkedArray, max_categories: int) -> dict[str, Any]:
    counted = pc.value_counts(column)
    valid = counted.field("values").is_valid()
    values = counted.field("values").filter(valid)
    counts = counted.field("counts").filter(valid)
    by_count = pa.table({"value": values, "count": counts})
    sort_keys = [("count", "descending"), ("value", "ascending")]
    if len(values) > max_categories:
        by_count = by_count.take(pc.select_k_unstable(by_count, max_categories, sort_keys))
    by_count = by_count.take(pc.sort_indices(by_count, sort_keys=sort_keys))
    top = tuple(
        zip(
            by_count.column("value").to_pylist(),
            by_count.column("count").to_pylist(),
            strict=True,
        )
    )
    non_null = len(column) - column.null_count
    return {
        "distinct_count": len(values),
        "categories": top,
        "other_count": non_null - sum(c for _, c in top),
    }


def _timestamp_stats(column: pa.ChunkedArray) -> dict[str, Any]:
    dtype = column.type
    if pa.types.is_date32(dtype):
        unit, aware = "D", False
    elif pa.types.is_date64(dtype):
        unit, aware = "ms", False
    else:
        unit, aware = dtype.unit, dtype.tz is not None
    physical = column.cast(pa.int32()) if pa.types.is_date32(dtype) else column
    extremes = pc.min_max(physical.cast(pa.int64()))
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is None:
        return {}
    stamps = np.array([low, high], dtype=np.int64).astype(f"datetime64[{unit}]")
    earliest, latest = np.datetime_as_string(stamps, timezone="UTC" if aware else "naive")
    return {"earliest": str(earliest), "latest": str(latest)}


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
            counts = rule.numeric_counts(_numeric_values(column), rows, nulls)
        elif kind == "categorical" and rule.allowed is not None:
            counts = _table_unseen_counts(rule, column, rows, nulls)
        else:
            counts = _Counts(rows, nulls)
        violations.extend(rule.judge(counts))
    return ValidationReport(rows, violations)


def _table_unseen_counts(rule: _Rule, column: pa.ChunkedArray, rows: int, nulls: int) -> _Counts:
    present = _decoded(column).drop_null()
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
