"""The event log: append-only records of what the server did (predictions, experiment
exposures) and what happened afterwards (outcomes), read back by time window for monitoring
and experiment analysis.

``open_event_log(url)`` picks the backend from the URL:

- a path (or ``file:///PATH``) — Parquet files in that folder (``<workspace home>/events`` by
  default), partitioned by key and hour, queried with DuckDB (:mod:`.parquet`);
- ``postgresql://…`` — one table per record kind in that database, used when the metadata
  database is PostgreSQL (:mod:`.postgres`).

Record kinds (``PREDICTIONS``, ``EXPOSURES``, ``OUTCOMES``) and the table form
records travel in are in :mod:`.kinds`; one contract test suite
(``tests/test_event_log.py``) runs against both backends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from shipyard.errors import InvalidInput
from shipyard.storage.events.kinds import (
    EXPOSURES,
    OUTCOMES,
    PREDICTIONS,
    Column,
    EventKind,
    Payload,
    check_time,
)
from shipyard.storage.events.parquet import ParquetEventLog
from shipyard.storage.events.postgres import PostgresEventLog


class EventLog(Protocol):
    """Where event records go. Thread-safe; every method may raise StorageUnavailable."""

    url: str
    """Where the log lives, safe to print (no password)."""

    def append(self, kind: EventKind, records: pa.Table) -> int:
        """Store a batch of records of one kind, all-or-nothing for readers; returns the rows."""
        ...

    def read(self, kind: EventKind, key: str, start: datetime, end: datetime) -> pa.Table:
        """The records whose partition column equals ``key`` and ``start <= time < end``, in
        the kind's order: fixed columns first, then the flattened payload columns."""
        ...

    def delete_before(self, kind: EventKind, cutoff: datetime) -> int:
        """Delete the records of every hour that ends at or before ``cutoff`` (retention);
        returns how many records were deleted."""
        ...

    def salt(self) -> bytes:
        """A secret made once per log and shared by every writer: the key of hashed columns, so
        that the same value hashes alike across replicas and restarts."""
        ...

    def close(self) -> None: ...


def open_event_log(url: str) -> EventLog:
    """The event log at ``url``: a folder path / ``file:///PATH``, or ``postgresql://…``."""
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else "file"
    match scheme:
        case "file":
            return ParquetEventLog(Path(url.removeprefix("file://")))
        case "postgresql" | "postgres":
            return PostgresEventLog(url)
        case _:
            raise InvalidInput(
                f"event log URL scheme {scheme!r} is not supported; use a folder path, "
                "file:///PATH or postgresql://USER@HOST:PORT/DB",
                field="event_log_url",
            )


def delete_older_than(log: EventLog, kind: EventKind, *, days: float, now: datetime) -> int:
    """Retention: delete the records of ``kind`` in hours that ended ``days`` or more before
    ``now``; returns how many were deleted."""
    if not days > 0:
        raise InvalidInput(
            f"retention must be a positive number of days; got {days!r}", field="retention_days"
        )
    return log.delete_before(kind, check_time(now, "now") - timedelta(days=days))


__all__ = [
    "EXPOSURES",
    "OUTCOMES",
    "PREDICTIONS",
    "Column",
    "EventKind",
    "EventLog",
    "ParquetEventLog",
    "Payload",
    "PostgresEventLog",
    "delete_older_than",
    "open_event_log",
]
