"""Point-in-time correct training sets, and the latest value per entity for materialisation.

For each row of the entity DataFrame (the *spine*) and each feature view, the value is the one of
the latest event with ``spine time − ttl ≤ event time ≤ spine time`` (both ends inclusive; no ttl:
no lower bound) and the same join keys. Among events with the same event time the one with the
latest created timestamp wins (rows with a created timestamp beat rows without; without a created
field the winner among exact ties is unspecified). A null in the chosen event stays null: older
events never fill it in. Spine rows are never dropped, reordered or de-duplicated; a row with no
event in its window gets nulls. Naive timestamps are UTC; times are compared in microseconds.

The join runs in DuckDB: the source is first narrowed, by a hash semi-join, to the events of the
spine's entities in the ttl-wide time buckets that can fall in some row's window (all events of the
spine's entities when there is no ttl), and an ``ASOF LEFT JOIN`` on the join keys and
(event time, created time) then picks each row's event. DuckDB spills to disk beyond its memory
limit (see :func:`shipyard.features.sources.connect`).

On-demand features are computed by the view's own ``transform``, vectorised over chunks of
:data:`CHUNK_ROWS` rows, on the point-in-time values of its input features (fetched even when not
requested) and the request fields, which come from entity DataFrame columns of the same name. The
arrays a transform receives are :func:`numpy_column` of the Arrow columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shipyard.core.fingerprint import fingerprint_columns
from shipyard.core.profile import Profile, profile_table
from shipyard.core.validation import ValidationReport
from shipyard.errors import InvalidInput
from shipyard.features.definitions import (
    FeatureSelection,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    RequestSource,
    split_ref,
)
from shipyard.features.sources import CREATED_US, EVENT_US, SourceTables, connect, quote

EntityData: TypeAlias = pd.DataFrame | pa.Table | str | os.PathLike[str]
AnyView: TypeAlias = FeatureView | OnDemandFeatureView

CHUNK_ROWS = 65_536
"""Rows per call of an on-demand view's transform when building a training set."""
EVENT_TIMESTAMP = "event_timestamp"
"""Column of :func:`latest_per_entity`: the chosen row's event time (UTC)."""
CREATED_TIMESTAMP = "created_timestamp"
"""Column of :func:`latest_per_entity`: the chosen row's created time (UTC), null if none."""
FINGERPRINT_VERSION = 1

_ROW = "__sy_row"
_TIME = "__sy_t"
_ORDER = "__sy_order"
_UTC_US = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TrainingSet:
    """The entity DataFrame's columns followed by the requested features, in the spine's order.

    ``fingerprint`` identifies *which* features made it (see :func:`training_fingerprint`);
    :meth:`data_fingerprint` identifies the values.
    """

    def __init__(self, table: pa.Table, feature_refs: Sequence[str], fingerprint: str) -> None:
        self._table = table
        self._refs = list(feature_refs)
        self._fingerprint = fingerprint
        self.validation: ValidationReport | None = None
        """Set by the feature store: the features checked against their views' reference
        profiles (None when no view has one)."""

    def profile(self) -> Profile:
        """The profile of every column (entity columns and features)."""
        return profile_table(self._table)

    @property
    def feature_refs(self) -> list[str]:
        """The requested ``view:feature`` references, in the order of the feature columns."""
        return list(self._refs)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def num_rows(self) -> int:
        return int(self._table.num_rows)

    @property
    def column_names(self) -> list[str]:
        return list(self._table.column_names)

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self._table.to_pandas()
        return frame

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (a temporary file renamed into place); the schema metadata records
        ``shipyard.feature_refs`` (JSON list) and ``shipyard.fingerprint``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        metadata = dict(self._table.schema.metadata or {})
        metadata[b"shipyard.feature_refs"] = json.dumps(self._refs).encode()
        metadata[b"shipyard.fingerprint"] = self._fingerprint.encode()
        try:
            pq.write_table(self._table.replace_schema_metadata(metadata), temp)
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target

    def data_fingerprint(self) -> str:
        """sha256 of the values (``shipyard.core.fingerprint``): names, types, every value, order.

        Computed on each call; it costs about as much as converting the table to pandas.
        """
        return fingerprint_columns(
            {name: self._table.column(name).to_pandas() for name in self._table.column_names}
        )

    def lineage_tags(self) -> dict[str, str]:
        """Tags that tie a run or model version to exactly these features: the references
        (JSON list) and the definitions fingerprint."""
        return {
            "features.refs": json.dumps(self._refs),
            "features.fingerprint": self._fingerprint,
        }

    def __repr__(self) -> str:
        return (
            f"TrainingSet(rows={self.num_rows}, features={self._refs}, "
            f"fingerprint={self._fingerprint[:12]}…)"
        )


def training_fingerprint(refs: Sequence[str], views: Sequence[AnyView]) -> str:
    """sha256 hex of ``{"version": 1, "features": refs, "views": specs}`` as compact JSON with
    sorted keys, where ``specs`` are the ``spec()`` of every view used (requested views, on-demand
    views and their input views) sorted by kind and name. It changes when a reference, its order,
    or anything in a used view's definition (source, ttl, dtypes, a transform's code…) changes."""
    specs = sorted((v.spec() for v in {id(v): v for v in views}.values()), key=_spec_order)
    payload = {"version": FINGERPRINT_VERSION, "features": list(refs), "views": specs}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def get_historical_features(
    entity_df: EntityData,
    features: Sequence[str] | FeatureService,
    views: Mapping[str, AnyView],
    *,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> TrainingSet:
    """A point-in-time correct training set (see the module docstring for the exact semantics).

    ``entity_df`` is a pandas DataFrame, an Arrow table or the path of a Parquet file, with the join
    keys of every view used, ``timestamp_column`` and any request fields of on-demand views.
    ``features`` are ``"view:feature"`` references (or a FeatureService) resolved in ``views``.
    Output columns are named by the bare feature name, or ``view__feature`` with
    ``full_feature_names``. A new connection (:func:`~shipyard.features.sources.connect`) is used
    and closed unless ``connection`` is given.
    """
    spine = _entity_table(entity_df)
    times = _spine_times(spine, timestamp_column)
    refs = features.refs() if isinstance(features, FeatureService) else _ref_list(features)
    plan = _Plan(refs, views, spine, full_feature_names)
    own = connection is None
    con = connect() if connection is None else connection
    fetched: dict[str, pa.Table] = {}
    try:
        with SourceTables(con) as tables:
            keys = list(dict.fromkeys(k for v, _ in plan.fetch.values() for k in v.join_keys))
            spine_name = tables.register_arrow(
                pa.table(
                    [spine.column(k) for k in keys]
                    + [times, pa.array(np.arange(spine.num_rows, dtype=np.int64))],
                    names=[*keys, _TIME, _ROW],
                ),
                "spine",
            )
            for view, names in plan.fetch.values():
                fetched[view.name] = _point_in_time(tables, spine, spine_name, view, names)
    finally:
        if own:
            con.close()
    arrays = [spine.column(i) for i in range(spine.num_columns)]
    computed = {
        odfv.name: _on_demand(odfv, spine, fetched, plan) for odfv in plan.on_demand.values()
    }
    for ref, _, view_name in plan.outputs:
        source = computed[view_name] if view_name in computed else fetched[view_name]
        arrays.append(source.column(split_ref(ref)[1]))
    names = spine.column_names + [out for _, out, _ in plan.outputs]
    table = pa.table(arrays, names=names)
    return TrainingSet(table, refs, training_fingerprint(refs, plan.used))


def latest_per_entity(
    view: FeatureView,
    start: datetime | None,
    end: datetime | None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Per entity (join-key combination), the latest row with ``start ≤ event time < end``.

    Ties on event time go to the latest created timestamp. Columns: the join keys,
    :data:`EVENT_TIMESTAMP`, :data:`CREATED_TIMESTAMP` (null when the view has no created field),
    then the features with their declared types; rows sorted by join keys (rows with a null join
    key are skipped). ``None`` leaves that end of the range open; naive datetimes are UTC.
    """
    clash = {EVENT_TIMESTAMP, CREATED_TIMESTAMP} & {*view.join_keys, *view.feature_names}
    if clash:
        raise InvalidInput(
            f"feature view {view.name!r}: {sorted(clash)} are reserved column names for "
            "materialisation; rename the join key or feature",
            field="features",
        )
    bounds = []
    lo = None if start is None else _epoch_us(start, "start")
    hi = None if end is None else _epoch_us(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput(f"start {start} is after end {end}", field="start")
    if lo is not None:
        bounds.append(f"{EVENT_US} >= {lo}")
    if hi is not None:
        bounds.append(f"{EVENT_US} < {hi}")
    where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
    keys = [quote(k) for k in view.join_keys]
    key_list = ", ".join(keys)
    # One pass: per entity, the values at the largest (event, created) — a missing created time
    # counts as oldest. arg_max_null keeps a null of the chosen row (arg_max would skip to an
    # older row's value: a back-fill).
    order = (
        f"(({EVENT_US})::HUGEINT << 64) + (coalesce({CREATED_US}, {-(2**63)})::HUGEINT + {2**63})"
    )
    picked = ", ".join(
        f"arg_max_null({c}, {_ORDER}) AS {c}"
        for c in [EVENT_US, CREATED_US, *(quote(f) for f in view.feature_names)]
    )
    own = connection is None
    con = connect() if connection is None else connection
    try:
        with SourceTables(con) as tables:
            source = tables.add(view)
            sql = f"""
                SELECT {key_list}, {picked}
                FROM (SELECT *, {order} AS {_ORDER} FROM {source} {where})
                GROUP BY {key_list}
                ORDER BY {key_list}
            """
            result = _query(con, sql, view)
    finally:
        if own:
            con.close()
    arrays: list[pa.ChunkedArray] = [result.column(k) for k in view.join_keys]
    arrays.append(result.column(EVENT_US).cast(pa.int64()).cast(_UTC_US))
    arrays.append(result.column(CREATED_US).cast(pa.int64()).cast(_UTC_US))
    arrays.extend(_cast_feature(view, f, result.column(f.name)) for f in view.features)
    names = [*view.join_keys, EVENT_TIMESTAMP, CREATED_TIMESTAMP, *view.feature_names]
    return pa.table(arrays, names=names)


def numpy_column(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """A writable NumPy array of an Arrow column, as on-demand transforms receive it.

    Numeric columns become their NumPy dtype, with nulls as NaN (an integer column with nulls
    becomes float64); string columns become object arrays with None for nulls; a bool column with
    nulls becomes an object array with None.
    """
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return np.array(array.to_numpy(zero_copy_only=False), copy=True)


# -------------------------------------------------------------------- planning
class _Plan:
    """What to fetch from which view, what to compute, and what to output under which name."""

    def __init__(
        self,
        refs: list[str],
        views: Mapping[str, AnyView],
        spine: pa.Table,
        full_feature_names: bool,
    ) -> None:
        self.fetch: dict[str, tuple[FeatureView, list[str]]] = {}
        self.on_demand: dict[str, OnDemandFeatureView] = {}
        self.outputs: list[tuple[str, str, str]] = []  # (ref, output column, view name)
        self.used: list[AnyView] = []
        if not refs:
            raise InvalidInput("no features requested", field="features")
        seen: dict[str, str] = {}
        for ref in refs:
            view_name, feature = split_ref(ref)
            view = views.get(view_name)
            if view is None:
                known = ", ".join(sorted(views)) or "none"
                raise InvalidInput(
                    f"feature reference {ref!r}: there is no feature view {view_name!r}; "
                    f"known views: {known}",
                    field="features",
                )
            if feature not in view.feature_names:
                raise InvalidInput(
                    f"feature reference {ref!r}: view {view_name!r} has no feature {feature!r}; "
                    f"it has {', '.join(view.feature_names)}",
                    field="features",
                )
            if ref in seen:
                raise InvalidInput(f"feature {ref!r} is requested twice", field="features")
            out = f"{view_name}__{feature}" if full_feature_names else feature
            if out in seen.values() or out in spine.column_names:
                other = next(
                    (f"feature {r!r}" for r, o in seen.items() if o == out),
                    "a column of the entity DataFrame",
                )
                raise InvalidInput(
                    f"feature {ref!r} would be column {out!r}, which {other} already is; "
                    "pass full_feature_names=True or rename the column",
                    field="features",
                )
            seen[ref] = out
            self.outputs.append((ref, out, view_name))
            if isinstance(view, FeatureView):
                self._add_fetch(view, [feature])
            else:
                self._add_on_demand(view, views, spine)
        for view, _ in self.fetch.values():
            for key in view.join_keys:
                if key not in spine.column_names:
                    raise InvalidInput(
                        f"the entity DataFrame has no column {key!r}, a join key of feature view "
                        f"{view.name!r}; it has: {', '.join(spine.column_names)}",
                        field=key,
                    )
        self.used.extend(v for v, _ in self.fetch.values())
        self.used.extend(self.on_demand.values())

    def _add_fetch(self, view: FeatureView, names: Sequence[str]) -> None:
        if view.name not in self.fetch:
            self.fetch[view.name] = (view, [])
        wanted = self.fetch[view.name][1]
        wanted.extend(n for n in names if n not in wanted)

    def _add_on_demand(
        self, odfv: OnDemandFeatureView, views: Mapping[str, AnyView], spine: pa.Table
    ) -> None:
        if odfv.name in self.on_demand:
            return
        self.on_demand[odfv.name] = odfv
        for source in odfv.sources:
            if isinstance(source, RequestSource):
                for field in source.schema:
                    if field.name not in spine.column_names:
                        raise InvalidInput(
                            f"on-demand feature view {odfv.name!r} needs request field "
                            f"{field.name!r}, which the entity DataFrame lacks; it has: "
                            f"{', '.join(spine.column_names)}",
                            field=field.name,
                        )
                continue
            view = source.view if isinstance(source, FeatureSelection) else source
            names = source.names if isinstance(source, FeatureSelection) else view.feature_names
            registered = views.get(view.name)
            self._add_fetch(registered if isinstance(registered, FeatureView) else view, names)


# -------------------------------------------------------------------- the join
def _point_in_time(
    tables: SourceTables, spine: pa.Table, spine_name: str, view: FeatureView, names: list[str]
) -> pa.Table:
    """The values of ``names`` for every spine row, in spine order (see the module docstring).

    Exact ties on event time are broken inside the ASOF join by ordering events on the 128-bit key
    ``event_us · 2⁶⁴ + (created_us + 2⁶³)`` (a missing created time counts as the smallest), and
    the spine row on ``t · 2⁶⁴ + (2⁶⁴ − 1)``: the match is then the latest event at or before
    ``t`` and, among those at the same time, the latest created.
    """
    source = tables.add(view)
    _check_keys(tables, spine, source, view)
    keys = [quote(k) for k in view.join_keys]
    key_list = ", ".join(keys)
    features = [quote(n) for n in names]
    carried = ", ".join([*(f"e.{k}" for k in keys), f"e.{EVENT_US}", *(f"e.{f}" for f in features)])
    if view.created_timestamp_field:
        carried += (
            f", e.{EVENT_US}::HUGEINT * {2**64} "
            f"+ (coalesce(e.{CREATED_US}, {-(2**63)})::HUGEINT + {2**63}) AS {_ORDER}"
        )
        spine_order = f"{_TIME}::HUGEINT * {2**64} + {2**64 - 1}"
        event_order = _ORDER
    else:
        spine_order = _TIME
        event_order = EVENT_US
    semi_on = " AND ".join(f"e.{k} = sb.{k}" for k in keys)
    if view.ttl is None:
        narrowed = f"""
            SELECT {carried} FROM {source} e
            SEMI JOIN (SELECT DISTINCT {key_list} FROM {spine_name}) sb ON {semi_on}"""
        values = ", ".join(f"e.{f} AS {f}" for f in features)
    else:
        ttl = view.ttl // timedelta(microseconds=1)
        buckets = f"list_distinct([({_TIME} - {ttl}) // {ttl}, {_TIME} // {ttl}])"
        narrowed = f"""
            SELECT {carried} FROM {source} e
            SEMI JOIN (
                SELECT DISTINCT {key_list}, unnest({buckets}) AS __sy_bucket
                FROM {spine_name} WHERE {_TIME} IS NOT NULL
            ) sb ON {semi_on} AND e.{EVENT_US} // {ttl} = sb.__sy_bucket"""
        inside = f"e.{EVENT_US} >= s.{_TIME} - {ttl}"
        values = ", ".join(f"CASE WHEN {inside} THEN e.{f} END AS {f}" for f in features)
    on = " AND ".join([f"s.{k} = e.{k}" for k in keys] + [f"s.{_ORDER} >= e.{event_order}"])
    sql = f"""
        WITH ev AS ({narrowed}),
        sp AS (SELECT *, {spine_order} AS {_ORDER} FROM {spine_name})
        SELECT {values} FROM sp s ASOF LEFT JOIN ev e ON {on}
        ORDER BY s.{_ROW}"""
    result = _query(tables.connection, sql, view)
    declared = {f.name: f for f in view.features}
    arrays = [_cast_feature(view, declared[n], result.column(n)) for n in names]
    return pa.table(arrays, names=names)


def _query(connection: duckdb.DuckDBPyConnection, sql: str, view: FeatureView) -> pa.Table:
    try:
        return connection.sql(sql).to_arrow_table()
    except (duckdb.BinderException, duckdb.ConversionException, duckdb.IOException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInput(
            f"feature view {view.name!r}: querying its source failed: {first}", field="source"
        ) from exc


_NUMBER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


def _check_keys(tables: SourceTables, spine: pa.Table, source: str, view: FeatureView) -> None:
    """Each join key is a number on both sides or a string on both sides."""
    types = tables.column_types(source)
    for key in view.join_keys:
        spine_type = spine.schema.field(key).type
        if pa.types.is_dictionary(spine_type):
            spine_type = spine_type.value_type
        spine_kind = (
            "number"
            if pa.types.is_integer(spine_type)
            or pa.types.is_floating(spine_type)
            or pa.types.is_decimal(spine_type)
            else "string"
            if pa.types.is_string(spine_type) or pa.types.is_large_string(spine_type)
            else None
        )
        source_type = types.get(key, "")
        bare = source_type.removeprefix("U")
        source_kind = (
            "number"
            if bare.startswith(_NUMBER_TYPES)
            else "string"
            if source_type == "VARCHAR"
            else None
        )
        if spine_kind and source_kind and spine_kind != source_kind:
            raise InvalidInput(
                f"join key {key!r} is {spine_type} in the entity DataFrame but {source_type} in "
                f"the source of feature view {view.name!r}; expected both numbers or both strings",
                field=key,
            )


def _cast_feature(view: FeatureView, field: Any, values: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return values.cast(field.arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"feature view {view.name!r}: feature {field.name!r} is declared {field.dtype} but its "
            f"source column has type {values.type} that does not convert: {exc}",
            field=field.name,
        ) from exc


# -------------------------------------------------------------------- on-demand
def _on_demand(
    odfv: OnDemandFeatureView, spine: pa.Table, fetched: Mapping[str, pa.Table], plan: _Plan
) -> pa.Table:
    inputs: dict[str, pa.ChunkedArray] = {}
    for source in odfv.sources:
        if isinstance(source, RequestSource):
            for field in source.schema:
                column = spine.column(field.name)
                try:
                    inputs[field.name] = column.cast(field.arrow_type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise InvalidInput(
                        f"request field {field.name!r} of on-demand feature view {odfv.name!r} is "
                        f"declared {field.dtype} but the entity DataFrame column has type "
                        f"{column.type}: {exc}",
                        field=field.name,
                    ) from exc
        else:
            view = source.view if isinstance(source, FeatureSelection) else source
            names = source.names if isinstance(source, FeatureSelection) else view.feature_names
            table = fetched[plan.fetch[view.name][0].name]
            for name in names:
                inputs[name] = table.column(name)
    chunks: dict[str, list[pa.Array]] = {f.name: [] for f in odfv.features}
    for start in range(0, spine.num_rows, CHUNK_ROWS):
        batch = {n: numpy_column(c.slice(start, CHUNK_ROWS)) for n, c in inputs.items()}
        result = odfv.transform(batch)
        for f in odfv.features:
            chunks[f.name].append(pa.array(result[f.name], type=f.arrow_type, from_pandas=True))
    return pa.table(
        [pa.chunked_array(chunks[f.name], type=f.arrow_type) for f in odfv.features],
        names=list(odfv.feature_names),
    )


# -------------------------------------------------------------------- inputs
def _entity_table(entity_df: EntityData) -> pa.Table:
    if isinstance(entity_df, pa.Table):
        table = entity_df
    elif isinstance(entity_df, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(entity_df, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"the entity DataFrame does not convert to Arrow: {exc}", field="entity_df"
            ) from exc
    elif isinstance(entity_df, (str, os.PathLike)):
        path = Path(entity_df)
        if not path.exists():
            raise InvalidInput(f"entity file {str(path)!r} does not exist", field="entity_df")
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(
                f"entity file {str(path)!r} is not readable Parquet: {exc}", field="entity_df"
            ) from exc
    else:
        raise InvalidInput(
            f"entity_df is a {type(entity_df).__name__}; expected a pandas DataFrame, a pyarrow "
            "Table or the path of a Parquet file",
            field="entity_df",
        )
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"the entity DataFrame has columns {dupes} twice", field="entity_df")
    return table.replace_schema_metadata(None)


def _spine_times(spine: pa.Table, column: str) -> pa.ChunkedArray:
    """The timestamp column as int64 microseconds since the epoch (naive = UTC)."""
    if column not in spine.column_names:
        raise InvalidInput(
            f"the entity DataFrame has no timestamp column {column!r}; it has: "
            f"{', '.join(spine.column_names)} (pass timestamp_column=...)",
            field=column,
        )
    values = spine.column(column)
    dtype = values.type
    if pa.types.is_timestamp(dtype):
        micros = values.cast(pa.timestamp("us", tz=dtype.tz), safe=False)
    elif pa.types.is_date(dtype):
        micros = values.cast(pa.timestamp("us"))
    else:
        raise InvalidInput(
            f"entity DataFrame column {column!r} has type {dtype}; expected timestamps",
            field=column,
        )
    return micros.cast(pa.int64())


def _ref_list(features: Sequence[str]) -> list[str]:
    if isinstance(features, str):
        return [features]
    refs = list(features)
    for ref in refs:
        split_ref(ref)
    return refs


def _epoch_us(value: datetime, field: str) -> int:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} {value!r} is not a datetime", field=field)
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def _spec_order(spec: Mapping[str, Any]) -> tuple[str, str]:
    return str(spec.get("kind", "")), str(spec.get("name", ""))
