"""Data profiles: per-column statistics of a reference table in one JSON format.

A :class:`Profile` summarises a reference table (a training set, a materialised feature view, a
model's reference data). The same format serves the feature store's validation and the monitoring
reference: new data is checked against it (:mod:`shipyard.core.validation`) and compared with it
by binned drift statistics on ``bin_edges``.

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
from dataclasses import dataclass
from typing import Any, Literal

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
    column = decoded(column)
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


def decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionaries decoded to their values; string views as large strings (for Arrow kernels)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if _is_string_view(column.type):
        column = column.cast(pa.large_string())
    return column


def numeric_values(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """The non-null values as NumPy: integers as they are, floats and decimals as float64."""
    column = decoded(column)
    if pa.types.is_decimal(column.type) or pa.types.is_floating(column.type):
        column = column.cast(pa.float64())
    values = column.drop_null()
    if values.num_chunks == 0:
        return np.empty(0, dtype=values.type.to_pandas_dtype())
    return np.asarray(values.combine_chunks().to_numpy(zero_copy_only=False))


def _numeric_stats(column: pa.ChunkedArray, bins: int) -> dict[str, Any]:
    values = numeric_values(column)
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
