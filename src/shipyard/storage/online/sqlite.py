"""The embedded online store: one SQLite file in WAL mode.

One table, ``online_rows (view, key, event_ts, created_ts, value)``, ``WITHOUT ROWID`` with primary
key ``(view, key)``, so a read is one B-tree lookup and the row's values sit in the leaf. ``value``
is the orjson encoding of the values. A write is one ``BEGIN IMMEDIATE`` transaction of an upsert
whose ``WHERE`` keeps the newer row (see ``base``), so concurrent writers queue on SQLite's write
lock and the final state does not depend on who came last.

Every thread gets its own connection (the server reads from the event loop and from worker
threads): under WAL, readers never wait for a writer, and the connection's statement cache keeps the
read statements prepared. A thread's connection is closed when the thread ends or by ``close()``.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

import orjson

from shipyard.errors import StorageUnavailable
from shipyard.storage.online.base import OnlineRow, check_view, encode_values, row_timestamps

_BUSY_TIMEOUT_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_rows (
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    event_ts REAL NOT NULL,
    created_ts REAL NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO online_rows (view, key, event_ts, created_ts, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, key) DO UPDATE
SET event_ts = excluded.event_ts, created_ts = excluded.created_ts, value = excluded.value
WHERE (excluded.event_ts, excluded.created_ts) > (online_rows.event_ts, online_rows.created_ts)
   OR ((excluded.event_ts, excluded.created_ts) = (online_rows.event_ts, online_rows.created_ts)
       AND excluded.value <> online_rows.value)
"""
_READ_ONE = "SELECT event_ts, created_ts, value FROM online_rows WHERE view = ? AND key = ?"
# Several keys are bound as one JSON array: one statement for every batch size, kept prepared in
# the connection's statement cache, and each key still one primary-key lookup.
_READ_MANY = (
    "SELECT key, event_ts, created_ts, value FROM online_rows "
    "WHERE view = ? AND key IN (SELECT value FROM json_each(?))"
)


class _ThreadConnection(threading.local):
    connection: sqlite3.Connection | None = None
    anchor: _Anchor | None = None


class _Anchor:
    """Lives exactly as long as a thread's connection slot; its finalizer closes the connection."""


class SQLiteOnlineStore:
    """The online store in the SQLite file at ``path`` (created with its folder when missing)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = _ThreadConnection()
        self._lock = threading.Lock()
        self._finalizers: list[weakref.finalize[[], _Anchor]] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"online store {self.url}: {exc}") from exc
        try:
            self._connection().execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise self._unavailable(exc, "opening") from exc

    # ----------------------------------------------------------------------- connections
    def _connection(self) -> sqlite3.Connection:
        connection = self._local.connection
        if connection is None:
            connection = self._connect()
        return connection

    def _connect(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StorageUnavailable(f"online store {self.url} is closed")
            connection = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit; write() issues BEGIN IMMEDIATE itself
                check_same_thread=False,  # so that close() may close every thread's connection
                cached_statements=64,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # Closed when the thread ends (its thread-local state, the anchor with it, is dropped)
            # or by close(), whichever comes first.
            anchor = _Anchor()
            self._local.connection = connection
            self._local.anchor = anchor
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(weakref.finalize(anchor, connection.close))
            return connection

    def _unavailable(self, exc: sqlite3.Error, doing: str) -> StorageUnavailable:
        if isinstance(exc, sqlite3.ProgrammingError) and self._closed:
            return StorageUnavailable(f"online store {self.url} is closed")
        return StorageUnavailable(f"online store {self.url}: {doing} failed: {exc}")

    # ---------------------------------------------------------------------- the protocol
    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        check_view(view)
        params = [(view, row.key, *row_timestamps(row), encode_values(row)) for row in rows]
        if not params:
            return 0
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                changed = connection.executemany(_UPSERT, params).rowcount
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unavailable(exc, f"writing {len(params)} rows to view {view!r}") from exc
        return changed

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRow | None]:
        check_view(view)
        try:
            connection = self._connection()
            if len(keys) == 1:
                key = keys[0]
                found = connection.execute(_READ_ONE, (view, key)).fetchone()
                if found is None:
                    return [None]
                return [OnlineRow(key, found[0], found[1], orjson.loads(found[2]))]
            rows = {
                key: OnlineRow(key, event_ts, created_ts, orjson.loads(value))
                for key, event_ts, created_ts, value in connection.execute(
                    _READ_MANY, (view, orjson.dumps(keys).decode())
                )
            }
        except sqlite3.Error as exc:
            raise self._unavailable(exc, f"reading view {view!r}") from exc
        return [rows.get(key) for key in keys]

    def delete_view(self, view: str) -> int:
        check_view(view)
        try:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                deleted = connection.execute(
                    "DELETE FROM online_rows WHERE view = ?", (view,)
                ).rowcount
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unavailable(exc, f"deleting view {view!r}") from exc
        return deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
        for finalizer in finalizers:
            finalizer()

    def __repr__(self) -> str:
        return f"SQLiteOnlineStore({str(self.path)!r})"
