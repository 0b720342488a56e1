"""What the event log stores: record kinds, each a fixed set of typed columns plus payloads.

A kind (predictions now; exposures and outcomes when experiments arrive) declares

- ``columns``: the fields every record has, with their Arrow type and whether they may be null;
  ``time`` (UTC) comes first and orders the log;
- ``partition``: the column whose value splits the log (the model for predictions): one Parquet
  folder per value, one ``WHERE`` term in PostgreSQL;
- ``payloads``: free-form name/value maps carried as *flattened* columns with a prefix
  (``in_age``, ``out_output``). Parquet keeps them as real columns, so that drift reads
  ``in_age`` directly; PostgreSQL keeps each map as one JSONB column and rebuilds the same
  flattened columns when reading, so both backends answer the same table.

Records cross the storage boundary as a ``pyarrow.Table``: a batch is columnar already where the
server builds it, and no backend needs row objects. :func:`conform` checks a batch against its kind
(naming the bad column) and casts it to the declared types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from shipyard.core.identifiers import validate_name
from shipyard.errors import InvalidInput

TIME = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class Payload:
    """A map stored as columns named ``prefix + key`` (Parquet) or one JSONB ``column``."""

    column: str
    prefix: str


@dataclass(frozen=True, slots=True)
class EventKind:
    name: str
    partition: str
    columns: tuple[Column, ...]
    payloads: tuple[Payload, ...] = ()
    order_by: tuple[str, ...] = ("time",)
    distinct: tuple[str, ...] = ()  # text columns whose values rarely repeat (ids)

    @property
    def schema(self) -> pa.Schema:
        """The fixed columns (payload columns vary from batch to batch)."""
        return pa.schema([pa.field(c.name, c.type, c.nullable) for c in self.columns])

    def payload_of(self, column: str) -> Payload | None:
        for payload in self.payloads:
            if column.startswith(payload.prefix):
                return payload
        return None


PREDICTIONS = EventKind(
    name="predictions",
    partition="model",
    columns=(
        Column("time", TIME, nullable=False),
        Column("model", pa.string(), nullable=False),
        Column("version", pa.int64()),  # null: a constant fallback answered
        Column("variant", pa.string()),
        Column("request_id", pa.string(), nullable=False),
        Column("row", pa.int32(), nullable=False),  # the row's index within its request
        Column("unit_key", pa.string()),
        Column("latency_ms", pa.float64(), nullable=False),
    ),
    payloads=(Payload("inputs", "in_"), Payload("outputs", "out_")),
    order_by=("time", "request_id", "row"),
    distinct=("request_id", "unit_key"),
)
"""One record per input row of a served request: the request's columns as ``in_<name>``, the
model's answer for that row as ``out_<name>`` (``out_output_<j>`` for column ``j`` of a 2-D
answer)."""


OUTCOMES = EventKind(
    name="outcomes",
    partition="model",
    columns=(
        Column("time", TIME, nullable=False),  # when the outcome was recorded
        Column("model", pa.string(), nullable=False),
        Column("request_id", pa.string()),  # null: keyed by unit_key alone
        Column("row", pa.int32()),  # the prediction's row within its request (null: 0)
        Column("unit_key", pa.string()),
        Column("idempotency_key", pa.string()),  # the latest record per key counts
        Column("label", pa.float64(), nullable=False),
        Column("metric", pa.string()),  # which outcome (null: "label", the model's target)
    ),
    order_by=("time", "request_id", "row"),
    distinct=("request_id", "unit_key", "idempotency_key"),
)
"""What actually happened for a prediction (a label, a reward, any named metric), joined to
predictions by ``request_id`` and ``row`` (or by ``unit_key``) when the model's quality is
computed, and to exposures when an experiment is analysed. ``label`` holds the value of
``metric`` (null: the model's target)."""


EXPOSURES = EventKind(
    name="exposures",
    partition="experiment",
    columns=(
        Column("time", TIME, nullable=False),
        Column("experiment", pa.string(), nullable=False),
        Column("deployment", pa.string(), nullable=False),
        Column("variant", pa.string(), nullable=False),
        Column("version", pa.int64()),  # null: a constant fallback answered
        Column("request_id", pa.string(), nullable=False),
        Column("unit_key", pa.string()),  # null: assigned at random
        Column("status", pa.int32(), nullable=False),  # HTTP status (gRPC mapped to it)
        Column("latency_ms", pa.float64(), nullable=False),
        Column("revision", pa.int64()),  # the deployment revision (split) that assigned it
    ),
    order_by=("time", "request_id"),
    distinct=("request_id", "unit_key"),
)
"""One record per request an experiment assigned: which variant (and version) answered it,
for which unit, how (status) and how fast — the denominators of every experiment metric, and
the error-rate and latency guardrails."""


def conform(kind: EventKind, records: pa.Table) -> pa.Table:
    """``records`` with the kind's fixed columns first, cast to their types (absent nullable ones
    filled with nulls), then its payload columns; InvalidInput names a missing or bad column."""
    given = records.column_names
    fixed = []
    for column in kind.columns:
        if column.name not in given:
            if not column.nullable:
                raise InvalidInput(
                    f"{kind.name} records lack column {column.name!r}; every record needs "
                    f"{', '.join(c.name for c in kind.columns if not c.nullable)}",
                    field=column.name,
                )
            fixed.append(pa.nulls(records.num_rows, column.type))
            continue
        values = records.column(column.name)
        try:
            values = values.cast(column.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"{kind.name} column {column.name!r} has type {values.type}; expected "
                f"{column.type}: {exc}",
                field=column.name,
            ) from exc
        if not column.nullable and values.null_count:
            raise InvalidInput(
                f"{kind.name} column {column.name!r} has {values.null_count} null values; "
                "it may not be null",
                field=column.name,
            )
        fixed.append(values)
    known = {c.name for c in kind.columns}
    extra = [name for name in given if name not in known]
    for name in extra:
        if kind.payload_of(name) is None:
            prefixes = ", ".join(repr(p.prefix) for p in kind.payloads) or "none"
            raise InvalidInput(
                f"{kind.name} records have column {name!r}, which is neither a field of the "
                f"kind nor a payload column (prefixes: {prefixes})",
                field=name,
            )
    if len(set(given)) != len(given):
        raise InvalidInput(f"{kind.name} records repeat a column name", field="columns")
    names = [c.name for c in kind.columns] + extra
    return pa.table(fixed + [records.column(n) for n in extra], names=names)


def check_key(kind: EventKind, key: str) -> str:
    """A partition value safe as a folder name (the rules of model names)."""
    return validate_name(key, what=f"{kind.name} {kind.partition}")


def check_time(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(
            f"{what} must be a timezone-aware datetime (e.g. datetime.now(UTC)); got {value!r}",
            field=what,
        )
    return value


def empty(kind: EventKind) -> pa.Table:
    return kind.schema.empty_table()
