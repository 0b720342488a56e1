"""Data and prediction drift of a window against a reference: :func:`compute_drift` → DriftReport.

Inputs (reference and current alike) are a pandas DataFrame, a ``pyarrow.Table``, or Parquet: a
file, a directory (every ``*.parquet`` below it), a glob pattern, or a list of those. Parquet is
read with Arrow **one column at a time**, in record batches of ``chunk_rows`` rows, so memory
does not grow with the number of columns:

- a numeric column is gathered into one float64 buffer per side (8 bytes a row), its finite
  values sorted once; KS and the Wasserstein distance run exactly on them, and the histogram
  counts for PSI / Jensen–Shannon / chi² come from the sorted values by binary search;
- a categorical or boolean column is never held: its category counts accumulate batch by batch.

Peak memory is therefore about ``3 × 8 × (reference rows + current rows)`` bytes for the widest
numeric column plus Arrow's read buffers for ``max_workers`` columns in flight — independent of
the column count. A DataFrame or Table is already in memory; it is converted one column at a time.

Which columns: ``columns`` (default: every column present in both inputs, in reference order,
less ``prediction_columns``) are the *inputs*; their drifted share gives the dataset verdict.
``prediction_columns`` (the model's outputs) are tested the same way and reported apart as
prediction drift (drifted when any of them drifted). Columns named that are missing from either
side are an error. Columns of a kind that is not tested (timestamps, binary, nested — named or
not), columns missing from the current data when ``columns`` is not given, columns whose kind
differs between the two sides, and columns without values on a side are listed in ``skipped``
with the reason, so that one odd column never stops a scheduled check. Statistics and test
selection: :mod:`shipyard.core.drift`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from shipyard.core.drift import (
    DEFAULT_SHARE_THRESHOLD,
    MAX_TEST_N,
    CategoricalSample,
    ColumnDrift,
    DriftKind,
    Method,
    NumericSample,
    categorical_drift,
    category_label,
    check_method,
    check_threshold,
    drift_share,
    numeric_drift,
)
from shipyard.core.profile import Profile, arrow_kind, decoded, numeric_values
from shipyard.errors import InvalidInput

DataSource: TypeAlias = (
    pd.DataFrame | pa.Table | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
)
DEFAULT_CHUNK_ROWS = 131_072
DEFAULT_MAX_WORKERS = 2
_TESTED_KINDS: frozenset[str] = frozenset({"numeric", "boolean", "categorical"})


# ---------------------------------------------------------------- the report
@dataclass(frozen=True, slots=True)
class DataDescription:
    """What one side of the comparison was: a description and its row count (nulls included)."""

    description: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataDescription:
        return cls(str(data["description"]), int(data["rows"]))


@dataclass(frozen=True, slots=True)
class SkippedColumn:
    column: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkippedColumn:
        return cls(str(data["column"]), str(data["reason"]))


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Drift of ``current`` against ``reference``.

    ``columns``: the input columns' results, in order; ``drift_share``: the share of them that
    drifted; ``dataset_drift``: ``drift_share >= share_threshold`` (False when nothing was
    tested); ``predictions``: the output columns' results; ``prediction_drift``: any of them
    drifted; ``skipped``: columns not tested and why.
    """

    reference: DataDescription
    current: DataDescription
    columns: tuple[ColumnDrift, ...]
    predictions: tuple[ColumnDrift, ...]
    skipped: tuple[SkippedColumn, ...]
    drift_share: float
    share_threshold: float
    dataset_drift: bool
    prediction_drift: bool

    @property
    def drifted_columns(self) -> list[str]:
        return [r.column for r in self.columns if r.drifted]

    def find_column(self, name: str) -> ColumnDrift | None:
        return next((r for r in (*self.columns, *self.predictions) if r.column == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (strict JSON: no NaN or infinity); ``from_dict`` gives back an equal report."""
        return {
            "reference": self.reference.to_dict(),
            "current": self.current.to_dict(),
            "drift_share": self.drift_share,
            "share_threshold": self.share_threshold,
            "dataset_drift": self.dataset_drift,
            "prediction_drift": self.prediction_drift,
            "columns": [r.to_dict() for r in self.columns],
            "predictions": [r.to_dict() for r in self.predictions],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        try:
            return cls(
                reference=DataDescription.from_dict(data["reference"]),
                current=DataDescription.from_dict(data["current"]),
                columns=tuple(ColumnDrift.from_dict(r) for r in data["columns"]),
                predictions=tuple(ColumnDrift.from_dict(r) for r in data["predictions"]),
                skipped=tuple(SkippedColumn.from_dict(s) for s in data["skipped"]),
                drift_share=float(data["drift_share"]),
                share_threshold=float(data["share_threshold"]),
                dataset_drift=bool(data["dataset_drift"]),
                prediction_drift=bool(data["prediction_drift"]),
            )
        except KeyError as exc:
            raise InvalidInput(
                f"drift report is missing the field {exc.args[0]!r}", field=exc.args[0]
            ) from exc


# ---------------------------------------------------------------- sources
class _Source:
    """One side of the comparison: column kinds, and per-column samples read on demand."""

    def __init__(
        self,
        description: str,
        num_rows: int,
        schema: pa.Schema,
        column: Callable[[str], Iterator[pa.Array | pa.ChunkedArray]],
    ) -> None:
        self.description = description
        self.num_rows = num_rows
        self.schema = schema
        self._column = column

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    def kind(self, name: str) -> str | None:
        """'numeric', 'boolean', 'categorical', 'timestamp', 'other'; None: all-null type."""
        return arrow_kind(self.schema.field(name).type)

    def numeric(self, name: str) -> NumericSample:
        buffer = np.empty(self.num_rows, dtype=np.float64)
        filled = 0
        for part in self._column(name):
            values = numeric_values(_chunked(part))
            buffer[filled : filled + len(values)] = values
            filled += len(values)
        return NumericSample.from_values(buffer[:filled], copy=False)

    def categorical(self, name: str) -> CategoricalSample:
        values: list[pa.Array] = []
        counts: list[pa.Array] = []
        for part in self._column(name):
            for chunk in _chunked(part).chunks:
                # dictionaries are counted by index, their values decoded afterwards
                counted = pc.value_counts(chunk if _is_dictionary(chunk) else decoded(chunk))
                part_values = counted.field("values")
                valid = part_values.is_valid()
                if _is_dictionary(part_values):
                    part_values = decoded(pa.chunked_array([part_values])).combine_chunks()
                values.append(part_values.filter(valid))
                counts.append(counted.field("counts").filter(valid))
        if not values:
            return CategoricalSample({})
        table = pa.table({"value": pa.concat_arrays(values), "count": pa.concat_arrays(counts)})
        if len(values) > 1:
            table = table.group_by("value").aggregate([("count", "sum")])
            table = table.rename_columns(["value", "count"])
        return CategoricalSample(
            {
                category_label(v): int(c)
                for v, c in zip(
                    table.column("value").to_pylist(),
                    table.column("count").to_pylist(),
                    strict=True,
                )
            }
        )


def _is_dictionary(array: pa.Array) -> bool:
    return bool(pa.types.is_dictionary(array.type))


def _chunked(part: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return part if isinstance(part, pa.ChunkedArray) else pa.chunked_array([part])


def _open(data: DataSource, chunk_rows: int, side: str, description: str | None) -> _Source:
    if isinstance(data, pd.DataFrame):
        return _dataframe_source(data, side, description)
    if isinstance(data, pa.Table):
        table = data

        def table_column(name: str) -> Iterator[pa.ChunkedArray]:
            yield table.column(name)

        return _Source(
            description or f"Arrow table ({table.num_rows} rows)",
            table.num_rows,
            table.schema,
            table_column,
        )
    if isinstance(data, str | os.PathLike) or (
        isinstance(data, Sequence) and all(isinstance(p, str | os.PathLike) for p in data)
    ):
        return _parquet_source(data, chunk_rows, side, description)
    raise InvalidInput(
        f"{side} must be a pandas DataFrame, a pyarrow Table or Parquet path(s), "
        f"got {type(data).__name__}",
        field=side,
    )


def _dataframe_source(frame: pd.DataFrame, side: str, description: str | None) -> _Source:
    if not frame.columns.is_unique:
        duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise InvalidInput(
            f"{side} DataFrame has duplicate column names: {', '.join(duplicated)}", field=side
        )
    try:
        schema = pa.Schema.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"{side} DataFrame cannot be read as Arrow: {exc}", field=side) from exc
    names = {str(c): c for c in frame.columns}

    def frame_column(name: str) -> Iterator[pa.Array]:
        # from_pandas turns NaN into nulls, as profiles of DataFrames do
        yield pa.Array.from_pandas(frame[names[name]])

    return _Source(
        description or f"DataFrame ({len(frame)} rows)", len(frame), schema, frame_column
    )


def _parquet_source(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    chunk_rows: int,
    side: str,
    description: str | None,
) -> _Source:
    patterns = [data] if isinstance(data, str | os.PathLike) else list(data)
    files = [file for pattern in patterns for file in _expand(pattern, side)]
    if not files:
        raise InvalidInput(f"{side} names no Parquet files", field=side)
    try:
        schema = ds.dataset(files[0], format="parquet").schema
        categorical = [f.name for f in schema if arrow_kind(f.type) in ("categorical", "boolean")]
        read_options = ds.ParquetReadOptions(dictionary_columns=categorical)
        dataset = ds.dataset(
            files, format=ds.ParquetFileFormat(read_options=read_options), schema=schema
        )
        num_rows = dataset.count_rows()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"{side} Parquet cannot be read: {exc}", field=side) from exc

    def parquet_column(name: str) -> Iterator[pa.Array]:
        for batch in dataset.to_batches(columns=[name], batch_size=chunk_rows):
            yield batch.column(0)

    shown = ", ".join(str(p) for p in patterns)
    return _Source(
        description or f"Parquet {shown} ({len(files)} files, {num_rows} rows)",
        num_rows,
        schema,
        parquet_column,
    )


def _expand(pattern: str | os.PathLike[str], side: str) -> list[str]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*.parquet") if p.is_file())
    if path.is_file():
        return [str(path)]
    anchor = Path(path.anchor or ".")
    relative = str(path.relative_to(anchor)) if path.anchor else str(path)
    matches = sorted(str(m) for m in anchor.glob(relative) if m.is_file())
    if not matches:
        raise InvalidInput(f"{side}: no Parquet file matches {str(pattern)!r}", field=side)
    return matches


# ---------------------------------------------------------------- the computation
@dataclass(frozen=True, slots=True)
class _Plan:
    column: str
    kind: DriftKind
    method: Method | None
    threshold: float | None
    bin_edges: tuple[float, ...] | None


def compute_drift(
    reference: DataSource,
    current: DataSource,
    *,
    columns: Sequence[str] | None = None,
    prediction_columns: Sequence[str] = (),
    methods: Mapping[str, Method] | None = None,
    thresholds: Mapping[str, float] | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    share_threshold: float = DEFAULT_SHARE_THRESHOLD,
    max_test_n: int = MAX_TEST_N,
    reference_profile: Profile | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_workers: int = DEFAULT_MAX_WORKERS,
    reference_description: str | None = None,
    current_description: str | None = None,
) -> DriftReport:
    """Drift of ``current`` against ``reference``, per column and for the dataset.

    ``methods`` overrides the test of a column (``{"age": "ks"}``); ``thresholds`` overrides a
    method's default threshold (``{"ks": 0.01}``), ``column_thresholds`` one column's;
    ``max_test_n`` is the size up to which p-value tests are chosen. ``reference_profile`` (the
    stored profile of the reference) supplies the numeric histogram edges; without it they are
    computed from the reference by the same rule. ``chunk_rows`` rows are read per Arrow batch;
    ``max_workers`` columns are computed at a time.
    """
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be >= 1, got {chunk_rows}", field="chunk_rows")
    if max_workers < 1:
        raise InvalidInput(f"max_workers must be >= 1, got {max_workers}", field="max_workers")
    drift_share([], share_threshold)  # validates the threshold
    ref = _open(reference, chunk_rows, "reference", reference_description)
    cur = _open(current, chunk_rows, "current", current_description)
    method_thresholds = {
        check_method(m): check_threshold(check_method(m), t) for m, t in (thresholds or {}).items()
    }

    outputs = list(dict.fromkeys(prediction_columns))
    named = ref.column_names if columns is None else list(dict.fromkeys(columns))
    inputs = [c for c in named if c not in outputs]
    for name in outputs if columns is None else [*inputs, *outputs]:
        for source in (ref, cur):
            if name not in source.schema.names:
                side = "reference" if source is ref else "current"
                raise InvalidInput(f"column {name!r} is not in the {side} data", field=name)
    known = set(inputs) | set(outputs)
    for option, mapping in (("methods", methods), ("column_thresholds", column_thresholds)):
        unknown = sorted(set(mapping or {}) - known)
        if unknown:
            raise InvalidInput(
                f"{option} names columns that are not compared: {', '.join(unknown)}",
                field=option,
            )

    skipped: list[SkippedColumn] = []
    plans: list[tuple[str, _Plan]] = []
    for role, names in (("input", inputs), ("prediction", outputs)):
        for name in names:
            plan = _plan(name, ref, cur, methods, column_thresholds, reference_profile)
            if isinstance(plan, SkippedColumn):
                skipped.append(plan)
            else:
                plans.append((role, plan))

    def run(item: tuple[str, _Plan]) -> tuple[str, ColumnDrift | SkippedColumn]:
        role, plan = item
        return role, _column_drift(plan, ref, cur, method_thresholds, max_test_n)

    if max_workers == 1 or len(plans) <= 1:
        outcomes = [run(item) for item in plans]
    else:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            outcomes = list(pool.map(run, plans))
    results: dict[str, list[ColumnDrift]] = {"input": [], "prediction": []}
    for role, outcome in outcomes:
        if isinstance(outcome, SkippedColumn):
            skipped.append(outcome)
        else:
            results[role].append(outcome)

    order = {name: i for i, name in enumerate([*inputs, *outputs])}
    skipped.sort(key=lambda s: order[s.column])
    share, dataset_drift = drift_share(results["input"], share_threshold)
    return DriftReport(
        reference=DataDescription(ref.description, ref.num_rows),
        current=DataDescription(cur.description, cur.num_rows),
        columns=tuple(results["input"]),
        predictions=tuple(results["prediction"]),
        skipped=tuple(skipped),
        drift_share=share,
        share_threshold=share_threshold,
        dataset_drift=dataset_drift,
        prediction_drift=any(r.drifted for r in results["prediction"]),
    )


def _plan(
    name: str,
    ref: _Source,
    cur: _Source,
    methods: Mapping[str, Method] | None,
    column_thresholds: Mapping[str, float] | None,
    profile: Profile | None,
) -> _Plan | SkippedColumn:
    if name not in cur.schema.names:
        return SkippedColumn(name, "missing from the current data")
    ref_kind, cur_kind = ref.kind(name), cur.kind(name)
    if ref_kind is None:
        return SkippedColumn(name, "no values in the reference data")
    if cur_kind is None:
        return SkippedColumn(name, "no values in the current data")
    if ref_kind not in _TESTED_KINDS:
        return SkippedColumn(name, f"kind {ref_kind} is not tested for drift")
    if ref_kind != cur_kind:
        return SkippedColumn(name, f"kind differs: reference {ref_kind}, current {cur_kind}")
    method = check_method(methods[name]) if methods and name in methods else None
    threshold = column_thresholds.get(name) if column_thresholds else None
    edges = None
    if profile is not None and ref_kind == "numeric":
        stored = profile.find_column(name)
        if stored is not None and stored.kind == "numeric":
            edges = stored.bin_edges
    kind: DriftKind = ref_kind  # type: ignore[assignment]
    return _Plan(name, kind, method, threshold, edges)


def _column_drift(
    plan: _Plan,
    ref: _Source,
    cur: _Source,
    method_thresholds: Mapping[Method, float],
    max_test_n: int,
) -> ColumnDrift | SkippedColumn:
    if plan.kind == "numeric":
        ref_sample, cur_sample = ref.numeric(plan.column), cur.numeric(plan.column)
        empty = _empty_side(ref_sample.binned_size, cur_sample.binned_size)
        if empty:
            return SkippedColumn(plan.column, empty)
        return numeric_drift(
            plan.column,
            ref_sample,
            cur_sample,
            method=plan.method,
            threshold=plan.threshold,
            bin_edges=plan.bin_edges,
            thresholds=method_thresholds,
            max_test_n=max_test_n,
        )
    ref_counts, cur_counts = ref.categorical(plan.column), cur.categorical(plan.column)
    empty = _empty_side(ref_counts.size, cur_counts.size)
    if empty:
        return SkippedColumn(plan.column, empty)
    return categorical_drift(
        plan.column,
        ref_counts,
        cur_counts,
        kind=plan.kind,
        method=plan.method,
        threshold=plan.threshold,
        thresholds=method_thresholds,
        max_test_n=max_test_n,
    )


def _empty_side(reference_size: int, current_size: int) -> str | None:
    if reference_size == 0:
        return "no values in the reference data"
    if current_size == 0:
        return "no values in the current data"
    return None
