"""The metadata database: one SQLAlchemy engine, read/write transactions, Alembic migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing on lock upgrades. PostgreSQL uses
psycopg 3. The backend is chosen by the URL scheme.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy.engine import Connection, Engine, make_url

from shipyard.errors import InvalidInput, StorageUnavailable, require_package

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_SQLITE_BUSY_TIMEOUT_S = 60.0
_PG_MIGRATION_LOCK = 0x5348_4950  # "SHIP": advisory lock key held while migrating


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


class Database:
    """A metadata database. ``read()`` and ``write()`` yield a connection inside a transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"metadata database {self.safe_url} failed: {exc}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction holding SQLite's write lock from its start (``BEGIN IMMEDIATE``)."""
        try:
            with (
                self.engine.connect().execution_options(shipyard_write=True) as conn,
                conn.begin(),
            ):
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"metadata database {self.safe_url} failed: {exc}") from exc

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def current_revision(self) -> str | None:
        with self.read() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration; safe when several processes call it at once."""
        if self.current_revision() == head_revision():
            return
        try:
            with self._migration_lock(), self.engine.begin() as conn:
                config = _alembic_config()
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(
                f"migrating metadata database {self.safe_url} failed: {exc}"
            ) from exc
        logger.info("metadata database %s migrated to %s", self.safe_url, head_revision())

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if not database or database == ":memory:":
                yield
                return
            with FileLock(f"{database}.migrate.lock"):
                yield
        else:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                    conn.commit()

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Open the database at ``url`` and, by default, migrate it to the newest schema."""
    database = Database(url)
    if migrate:
        database.upgrade()
    return database


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    match parsed.get_backend_name():
        case "sqlite":
            return _sqlite_engine(parsed)
        case "postgresql" | "postgres":
            require_package("psycopg", "postgres")  # the driver SQLAlchemy will use
            parsed = parsed.set(drivername="postgresql+psycopg")
            return sa.create_engine(parsed, pool_pre_ping=True)
        case other:
            raise InvalidInput(
                f"database URL scheme {other!r} is not supported; use sqlite:///PATH or "
                "postgresql://USER@HOST:PORT/DB",
                field="SHIPYARD_DATABASE_URL",
            )


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("shipyard_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
