"""The scale-out event log: one PostgreSQL table per record kind, in the metadata database.

Table ``shipyard_events_<kind>``: the kind's fixed fields as typed columns (``time timestamptz``,
``model text``, ``version bigint``…), indexed on ``(<partition>, time)``, and one ``jsonb``
column per payload (``inputs``, ``outputs``).

Why JSONB for the payloads rather than one typed column per input: one table then holds every
model and every version, whatever its signature, and a new model or a changed signature needs no
DDL on the serving path (``ALTER TABLE`` takes an exclusive lock and would race between replicas);
the fields that are filtered and joined on (model, time, request id, unit key) stay typed and
indexed. The cost is size (keys repeated per row) and type fidelity (JSON numbers: integers and
floats come back as int64/float64, NaN as null). Reading rebuilds the flattened ``in_*``/``out_*``
columns, so callers get the same table from either backend.

The tables are created on first use (``CREATE TABLE IF NOT EXISTS`` under a transaction-scoped
advisory lock, so replicas starting together do not collide). They are not in the Alembic
migrations: the event log is append-only data with its own retention, not metadata, and the same
code works when the events live in a database of their own. Appends are one ``COPY`` per batch.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy.engine import make_url

from shipyard.errors import StorageUnavailable, require_package
from shipyard.storage.events.kinds import (
    EventKind,
    Payload,
    check_key,
    check_time,
    conform,
    empty,
)

_DDL_LOCK = 0x5348_4556  # "SHEV": advisory lock key held while creating event tables
_PG_TYPES = {
    pa.string(): "text",
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.float64(): "double precision",
    pa.bool_(): "boolean",
}
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _pg_type(column_type: pa.DataType) -> str:
    if pa.types.is_timestamp(column_type):
        return "timestamptz"
    return _PG_TYPES[column_type]


def table_name(kind: EventKind) -> str:
    return f"shipyard_events_{kind.name}"


def _conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresEventLog:
    """Event records in the PostgreSQL database at ``url``; one connection, used under a lock."""

    def __init__(self, url: str) -> None:
        self._psycopg = require_package("psycopg", "postgres")
        self._conninfo = _conninfo(url)
        self.url = make_url(url).render_as_string(hide_password=True)
        self._lock = threading.Lock()
        self._connection: Any = None
        self._ready: set[str] = set()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in a transaction, committed at the end; any database failure is
        StorageUnavailable and drops the connection (the next call reconnects)."""
        with self._lock:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = self._psycopg.connect(self._conninfo, connect_timeout=10)
                with self._connection.transaction(), self._connection.cursor() as cursor:
                    yield cursor
            except self._psycopg.Error as exc:
                if self._connection is not None:
                    self._connection.close()
                self._connection = None
                raise StorageUnavailable(f"event log {self.url} failed: {exc}") from exc

    def _ensure(self, cursor: Any, kind: EventKind) -> None:
        if kind.name in self._ready:
            return
        columns = [
            f'"{c.name}" {_pg_type(c.type)}{"" if c.nullable else " NOT NULL"}'
            for c in kind.columns
        ]
        columns += [f'"{p.column}" jsonb' for p in kind.payloads]
        table = table_name(kind)
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        cursor.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(columns)})')
        for column in kind.columns:  # columns a later release added to the kind
            if column.nullable:
                cursor.execute(
                    f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "{column.name}" '
                    f"{_pg_type(column.type)}"
                )
        cursor.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_by_{kind.partition}" '
            f'ON "{table}" ("{kind.partition}", time)'
        )
        self._ready.add(kind.name)

    def append(self, kind: EventKind, records: pa.Table) -> int:
        if records.num_rows == 0:
            return 0
        table = conform(kind, records)
        fixed = [table.column(c.name).to_pylist() for c in kind.columns]
        payloads = [_payload_json(table, kind, p) for p in kind.payloads]
        names = [c.name for c in kind.columns] + [p.column for p in kind.payloads]
        columns = ", ".join(f'"{n}"' for n in names)
        with self._transaction() as cursor:
            self._ensure(cursor, kind)
            with cursor.copy(f'COPY "{table_name(kind)}" ({columns}) FROM STDIN') as copy:
                for row in zip(*fixed, *payloads, strict=True):
                    copy.write_row(row)
        return int(table.num_rows)

    def read(self, kind: EventKind, key: str, start: datetime, end: datetime) -> pa.Table:
        check_key(kind, key)
        check_time(start, "start")
        check_time(end, "end")
        names = [c.name for c in kind.columns]
        selected = ", ".join(
            [f'"{n}"' for n in names] + [f'"{p.column}"::text' for p in kind.payloads]
        )
        order = ", ".join(f'"{c}"' for c in kind.order_by)
        with self._transaction() as cursor:
            self._ensure(cursor, kind)
            cursor.execute(
                f'SELECT {selected} FROM "{table_name(kind)}" WHERE "{kind.partition}" = %s '
                f"AND time >= %s AND time < %s ORDER BY {order}",
                (key, start, end),
            )
            rows = cursor.fetchall()
        if not rows:
            return empty(kind)
        values = list(zip(*rows, strict=True))
        arrays: dict[str, pa.Array] = {
            c.name: pa.array(values[i], type=c.type) for i, c in enumerate(kind.columns)
        }
        for offset, payload in enumerate(kind.payloads):
            maps = [None if v is None else orjson.loads(v) for v in values[len(names) + offset]]
            arrays.update(_payload_columns(maps, payload.prefix))
        return conform(kind, pa.table(arrays))

    def delete_before(self, kind: EventKind, cutoff: datetime) -> int:
        """Delete the records of every hour that ends at or before ``cutoff``."""
        check_time(cutoff, "cutoff")
        with self._transaction() as cursor:
            self._ensure(cursor, kind)
            cursor.execute(
                f'DELETE FROM "{table_name(kind)}" '
                "WHERE time < date_trunc('hour', %s::timestamptz)",
                (cutoff,),
            )
            return int(cursor.rowcount)

    def salt(self) -> bytes:
        with self._transaction() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS shipyard_events_salt "
                "(id integer PRIMARY KEY CHECK (id = 1), salt bytea NOT NULL)"
            )
            cursor.execute(
                "INSERT INTO shipyard_events_salt VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                (secrets.token_bytes(32),),
            )
            cursor.execute("SELECT salt FROM shipyard_events_salt WHERE id = 1")
            return bytes(cursor.fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _payload_json(table: pa.Table, kind: EventKind, payload: Payload) -> list[str | None]:
    """One JSON object per row from the columns named ``prefix + key``."""
    prefix = payload.prefix
    names = [n for n in table.column_names if kind.payload_of(n) == payload]
    if not names:
        return [None] * table.num_rows
    keys = [n.removeprefix(prefix) for n in names]
    columns = [table.column(n).to_pylist() for n in names]
    return [
        orjson.dumps(dict(zip(keys, row, strict=True)), option=_JSON_OPTIONS).decode()
        for row in zip(*columns, strict=True)
    ]


def _payload_columns(maps: list[Any], prefix: str) -> dict[str, pa.Array]:
    present = [m if isinstance(m, dict) else {} for m in maps]
    if not any(present):
        return {}
    names = dict.fromkeys(key for m in present for key in m)  # every key, first-seen order
    return {f"{prefix}{name}": pa.array([m.get(name) for m in present]) for name in names}
