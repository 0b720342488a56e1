"""Materialisation: copy the newest value per entity from a view's source into the online store.

A run reads the source once (the latest row per entity with ``start ≤ event time < end``, ties by
created time), writes it in batches and then advances the view's watermark. Writes keep, per entity,
the row with the newest (event time, created time), so a run is idempotent and a run that died half
way is finished by running it again: nothing older ever overwrites something newer. Streaming
updates (``push``) go through the same write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.core.profile import profile_table
from shipyard.core.validation import validate
from shipyard.errors import InvalidInput
from shipyard.features.catalog import FeatureCatalog
from shipyard.features.definitions import FeatureView
from shipyard.features.offline import CREATED_TIMESTAMP, EVENT_TIMESTAMP, latest_per_entity
from shipyard.features.online import namespace, rows_from_table
from shipyard.storage.online import OnlineStore

logger = logging.getLogger(__name__)

WRITE_BATCH = 5_000
UTC_US = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    """What one materialisation of one view wrote."""

    view: str
    version: int
    start: datetime
    end: datetime
    rows_read: int
    rows_written: int
    violations: tuple[dict[str, Any], ...] = ()  # against the view's reference profile
    reference_set: bool = False  # this run's profile became the reference (there was none)


def utc(value: datetime, field: str) -> datetime:
    """``value`` as an aware UTC datetime (naive means UTC)."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} is {value!r}; expected a datetime", field=field)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def materialize_view(
    view: FeatureView,
    version: int,
    start: datetime,
    end: datetime,
    *,
    online: OnlineStore,
    catalog: FeatureCatalog,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> MaterializeResult:
    """Write the newest value per entity in ``[start, end)``; advance a contiguous watermark."""
    start, end = utc(start, "start"), utc(end, "end")
    if end <= start:
        raise InvalidInput(
            f"end ({end.isoformat()}) must be after start ({start.isoformat()})", field="end"
        )
    if not view.online:
        raise InvalidInput(
            f"feature view {view.name!r} is not online (online=False)", field="views"
        )
    table = latest_per_entity(view, start, end, connection=connection)
    written = 0
    target = namespace(view.name, version)
    for offset in range(0, table.num_rows, WRITE_BATCH):
        written += online.write(target, rows_from_table(view, table.slice(offset, WRITE_BATCH)))
    watermark = catalog.watermark(view.name, version)
    if watermark is None or start <= watermark:
        catalog.advance_watermark(view.name, version, end, written)
    violations, reference_set = _check_profile(view, version, table, catalog)
    logger.info(
        "materialised %s v%d %s..%s: %d entities read, %d rows changed",
        view.name,
        version,
        start.isoformat(),
        end.isoformat(),
        table.num_rows,
        written,
    )
    return MaterializeResult(
        view.name, version, start, end, table.num_rows, written, violations, reference_set
    )


def _check_profile(
    view: FeatureView, version: int, table: pa.Table, catalog: FeatureCatalog
) -> tuple[tuple[dict[str, Any], ...], bool]:
    """Validate the materialised features against the view's reference profile; the first
    non-empty materialisation of a version sets that reference."""
    if table.num_rows == 0:
        return (), False
    features = table.select(list(view.feature_names))
    reference = catalog.reference_profile(view.name, version)
    if reference is None:
        catalog.set_reference_profile(view.name, version, profile_table(features))
        return (), True
    report = validate(features, reference)
    for violation in report.violations:
        logger.warning("materialising %s v%d: %s", view.name, version, violation.message)
    return tuple(v.to_dict() for v in report.violations), False


def push_rows(view: FeatureView, version: int, data: Any, *, online: OnlineStore) -> int:
    """Write streaming updates (a DataFrame, Arrow table or dict of columns) to the online store."""
    table = _as_table(data)
    needed = [*view.join_keys, view.timestamp_field, *view.feature_names]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise InvalidInput(
            f"push to {view.name!r} lacks columns {missing}; expected {needed}", field=missing[0]
        )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {k: table[k] for k in view.join_keys}
    for name, target in (
        (view.timestamp_field, EVENT_TIMESTAMP),
        (view.created_timestamp_field, CREATED_TIMESTAMP),
    ):
        if name is None or name not in table.column_names:
            columns[target] = pa.nulls(table.num_rows, UTC_US)
            continue
        column = table[name]
        if not pa.types.is_timestamp(column.type):
            raise InvalidInput(
                f"push to {view.name!r}: column {name!r} is {column.type}; expected a timestamp",
                field=name,
            )
        if not column.type.tz:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
        columns[target] = pc.cast(column, UTC_US, safe=False)
    for feature in view.features:
        try:
            columns[feature.name] = table[feature.name].cast(feature.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"push to {view.name!r}: column {feature.name!r} is not {feature.dtype}: {exc}",
                field=feature.name,
            ) from exc
    rows = rows_from_table(view, pa.table(columns))
    return online.write(namespace(view.name, version), rows)


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, Mapping):
        return pa.table(dict(data))
    if isinstance(data, Sequence) and all(isinstance(r, Mapping) for r in data):
        return pa.Table.from_pylist(list(data))
    raise InvalidInput(
        f"push data is a {type(data).__name__}; expected a DataFrame, Arrow table or columns",
        field="data",
    )
