"""Feature view sources made queryable on a DuckDB connection.

:class:`SourceTables` registers each view's source as a temporary view whose columns are the view's
join keys, its features, and two ``BIGINT`` columns: the event time and the created time as
microseconds since the Unix epoch in UTC (a naive timestamp is read as UTC, an aware one is
converted; the created time is NULL when the view has none). Offline retrieval and materialisation
query those.

How each kind of source is read:

- :class:`ParquetSource`: a file, a folder (every ``*.parquet`` below it) or a glob, through
  DuckDB's ``read_parquet``; a remote URL (``s3://…``) goes through an fsspec filesystem
  registered on the connection (see :func:`connect`), so DuckDB's httpfs extension is not needed.
- :class:`CsvSource`: ``read_csv`` with a header row, types detected by DuckDB.
- :class:`DuckDBSource`: the query, on the connection itself or on ``database`` attached read-only
  (its tables are then found by unqualified name while the sources are open).
- :class:`PostgresSource`: the query run by psycopg in a read-only transaction, fetched as an Arrow
  table and registered on the connection (so it is held in memory).

Every declared column is checked before any query runs; a missing one is an :class:`InvalidInput`
naming the column, its role and the source.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from shipyard.errors import InvalidInput, StorageUnavailable, require_package
from shipyard.features.definitions import (
    CsvSource,
    DuckDBSource,
    FeatureView,
    ParquetSource,
    PostgresSource,
    Source,
)

EVENT_US = "__sy_event_us"
"""Column of a registered source: the event time, microseconds since the epoch (UTC)."""
CREATED_US = "__sy_created_us"
"""Column of a registered source: the created time, microseconds since the epoch (UTC), or NULL."""

DEFAULT_MEMORY_LIMIT = "768MB"
_TIMESTAMP_TYPES = ("TIMESTAMP", "DATE")  # TIMESTAMP, TIMESTAMP_NS/MS/S, TIMESTAMP WITH TIME ZONE
_POSTGRES_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}


def connect(
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_directory: str | Path | None = None,
    threads: int | None = None,
    s3_endpoint_url: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for feature queries.

    ``memory_limit`` bounds DuckDB's buffer memory; beyond it, joins and sorts spill to
    ``temp_directory`` (default: a per-process folder under the system temp directory, not the
    working directory). ``s3_endpoint_url`` selects a non-AWS S3 API for ``s3://`` sources.
    """
    folder = temp_directory or Path(tempfile.gettempdir()) / f"shipyard-duckdb-{os.getpid()}"
    config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": str(folder)}
    if threads is not None:
        config["threads"] = threads
    connection = duckdb.connect(config=config)
    if s3_endpoint_url is not None:
        _register_filesystem(connection, "s3", s3_endpoint_url)
    return connection


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


class SourceTables:
    """The sources of some feature views, registered on one connection until :meth:`close`.

    Use as a context manager: every temporary view, registered table and attached database is
    removed on exit, and the connection's search path is restored.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection
        self._views: list[str] = []
        self._tables: list[str] = []
        self._attached: list[str] = []
        self._search_path: str | None = None
        self._by_view: dict[str, str] = {}

    def __enter__(self) -> SourceTables:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def add(self, view: FeatureView) -> str:
        """Register ``view``'s source (once per view name); the name of its normalised view."""
        if view.name in self._by_view:
            return self._by_view[view.name]
        raw = self._register_raw(view)
        columns = self._describe(raw, view)
        normalised = self._temp_name("fv")
        keys = [self._column(view, columns, k, "join key") for k in view.join_keys]
        event = self._timestamp(view, columns, view.timestamp_field, "timestamp field")
        created = (
            self._timestamp(view, columns, view.created_timestamp_field, "created timestamp field")
            if view.created_timestamp_field
            else "NULL::BIGINT"
        )
        features = [self._column(view, columns, f, "feature") for f in view.feature_names]
        select = ", ".join(
            [f"{c} AS {quote(k)}" for c, k in zip(keys, view.join_keys, strict=True)]
            + [f"{event} AS {EVENT_US}", f"{created} AS {CREATED_US}"]
            + [f"{c} AS {quote(f)}" for c, f in zip(features, view.feature_names, strict=True)]
        )
        self._execute(f"CREATE TEMP VIEW {normalised} AS SELECT {select} FROM {raw}", view)
        self._views.append(normalised)
        self._by_view[view.name] = normalised
        return normalised

    def column_types(self, name: str) -> dict[str, str]:
        """DuckDB type of each column of a registered view or table."""
        rows = self.connection.sql(f"DESCRIBE SELECT * FROM {name}").fetchall()
        return {str(row[0]): str(row[1]) for row in rows}

    def register_arrow(self, table: pa.Table, prefix: str = "arrow") -> str:
        """Register an Arrow table on the connection under a fresh name (unregistered on close)."""
        name = self._temp_name(prefix)
        self.connection.register(name, table)
        self._tables.append(name)
        return name

    def close(self) -> None:
        for name in reversed(self._views):
            self.connection.execute(f"DROP VIEW IF EXISTS {name}")
        for name in self._tables:
            self.connection.unregister(name)
        if self._search_path is not None:
            if self._search_path:
                self.connection.execute(f"SET search_path = {_literal(self._search_path)}")
            else:
                self.connection.execute("RESET search_path")
        for alias in self._attached:
            self.connection.execute(f"DETACH DATABASE IF EXISTS {quote(alias)}")
        self._views, self._tables, self._attached = [], [], []
        self._search_path = None
        self._by_view = {}

    # ---------------------------------------------------------------- registration
    def _register_raw(self, view: FeatureView) -> str:
        source: Source = view.source
        if isinstance(source, PostgresSource):
            return self.register_arrow(_postgres_table(source, view), "pg")
        name = self._temp_name("src")
        if isinstance(source, ParquetSource):
            query = f"SELECT * FROM read_parquet({_literal(self._files(source.path, 'parquet'))})"
        elif isinstance(source, CsvSource):
            files = _literal(self._files(source.path, "csv"))
            query = f"SELECT * FROM read_csv({files}, header = true)"
        elif isinstance(source, DuckDBSource):
            if source.database is not None:
                self._attach(source.database, view)
            query = source.query.strip().rstrip(";")
        else:
            raise InvalidInput(
                f"feature view {view.name!r} has a source of unknown type {type(source).__name__}",
                field="source",
            )
        self._execute(f"CREATE TEMP VIEW {name} AS {query}", view)
        self._views.append(name)
        return name

    def _files(self, path: str, extension: str) -> str:
        protocol, sep, _ = path.partition("://")
        if sep and protocol != "file":
            if not self.connection.filesystem_is_registered(protocol):
                _register_filesystem(self.connection, protocol, None)
            if _is_glob(path) or path.endswith(f".{extension}"):
                return path
            return f"{path.rstrip('/')}/**/*.{extension}"
        local = Path(path.removeprefix("file://")).expanduser()
        if local.is_dir():
            return str(local / "**" / f"*.{extension}")
        return str(local)

    def _attach(self, database: str, view: FeatureView) -> None:
        path = str(Path(database).expanduser().resolve())
        if not Path(path).exists():
            raise InvalidInput(
                f"feature view {view.name!r}: DuckDB database {database!r} does not exist",
                field="source",
            )
        attached = {
            str(row[1]): str(row[0])
            for row in self.connection.sql(
                "SELECT database_name, path FROM duckdb_databases() WHERE path IS NOT NULL"
            ).fetchall()
        }
        alias = attached.get(path)
        if alias is None:
            alias = "sy_db_" + hashlib.sha256(path.encode()).hexdigest()[:12]
            self._execute(f"ATTACH {_literal(path)} AS {quote(alias)} (READ_ONLY)", view)
            self._attached.append(alias)
        if self._search_path is None:
            self._search_path = str(
                self.connection.sql("SELECT current_setting('search_path')").fetchall()[0][0]
            )
        current = str(self.connection.sql("SELECT current_setting('search_path')").fetchall()[0][0])
        entries = [e for e in current.split(",") if e]
        if f"{alias}.main" not in entries:
            entries.insert(0, f"{alias}.main")
            self.connection.execute(f"SET search_path = {_literal(','.join(entries))}")

    # ---------------------------------------------------------------- checks
    def _describe(self, raw: str, view: FeatureView) -> dict[str, tuple[str, str]]:
        """Lower-cased column name → (name as the source spells it, DuckDB type)."""
        try:
            types = self.column_types(raw)
        except duckdb.Error as exc:
            raise _source_error(view, exc) from exc
        return {name.lower(): (name, dtype) for name, dtype in types.items()}

    def _column(
        self, view: FeatureView, columns: dict[str, tuple[str, str]], name: str, role: str
    ) -> str:
        found = columns.get(name.lower())
        if found is None:
            raise InvalidInput(
                f"feature view {view.name!r}: its source {_describe_source(view.source)} has no "
                f"column {name!r} (the view's {role}); the source has: "
                f"{', '.join(n for n, _ in columns.values())}",
                field=name,
            )
        return quote(found[0])

    def _timestamp(
        self, view: FeatureView, columns: dict[str, tuple[str, str]], name: str, role: str
    ) -> str:
        column = self._column(view, columns, name, role)
        dtype = columns[name.lower()][1]
        if not dtype.startswith(_TIMESTAMP_TYPES):
            raise InvalidInput(
                f"feature view {view.name!r}: column {name!r} (the view's {role}) of "
                f"{_describe_source(view.source)} has type {dtype}; expected a timestamp or date",
                field=name,
            )
        return f"epoch_us({column})"

    # ---------------------------------------------------------------- plumbing
    def _temp_name(self, prefix: str) -> str:
        return f"__sy_{prefix}_{uuid.uuid4().hex[:12]}"

    def _execute(self, sql: str, view: FeatureView) -> None:
        try:
            self.connection.execute(sql)
        except duckdb.Error as exc:
            raise _source_error(view, exc) from exc


def _source_error(view: FeatureView, exc: duckdb.Error) -> InvalidInput:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInput(
        f"feature view {view.name!r}: cannot read its source {_describe_source(view.source)}: "
        f"{first}",
        field="source",
    )


def _describe_source(source: Source) -> str:
    if isinstance(source, (ParquetSource, CsvSource)):
        kind = "Parquet" if isinstance(source, ParquetSource) else "CSV"
        return f"({kind} {source.path!r})"
    if isinstance(source, DuckDBSource):
        where = f" on {source.database!r}" if source.database else ""
        return f"(DuckDB query {source.query!r}{where})"
    spec = source.spec()
    return f"(PostgreSQL query {spec['query']!r} on {spec['url']!r})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _register_filesystem(
    connection: duckdb.DuckDBPyConnection, protocol: str, s3_endpoint_url: str | None
) -> None:
    """Let DuckDB read ``protocol://`` paths through fsspec (s3fs for ``s3``)."""
    fsspec = require_package("fsspec", "s3")
    if protocol in ("s3", "s3a"):
        require_package("s3fs", "s3")
        client_kwargs = {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
        filesystem = fsspec.filesystem("s3", client_kwargs=client_kwargs)
    else:
        filesystem = fsspec.filesystem(protocol)
    connection.register_filesystem(filesystem)


def _postgres_table(source: PostgresSource, view: FeatureView) -> pa.Table:
    """Run the query read-only with psycopg and return its rows as an Arrow table."""
    psycopg = require_package("psycopg", "postgres")
    url = source.url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(url) as conn:
            conn.read_only = True
            with conn.cursor() as cursor:
                cursor.execute(source.query)
                description: Sequence[Any] = cursor.description or ()
                rows = cursor.fetchall()
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(
            f"feature view {view.name!r}: PostgreSQL at {source.spec()['url']!r} is unreachable: "
            f"{exc}"
        ) from exc
    except psycopg.Error as exc:
        raise InvalidInput(
            f"feature view {view.name!r}: the query of {_describe_source(source)} failed: {exc}",
            field="source",
        ) from exc
    names = [str(d.name) for d in description]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values, column in zip(columns, description, strict=True):
        dtype = _POSTGRES_TYPES.get(int(column.type_code))
        arrays.append(pa.array(list(values), type=dtype))
    return pa.table(arrays, names=names)
