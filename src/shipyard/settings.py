"""The one typed settings object, read from ``SHIPYARD_*`` environment variables at the edges."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where a workspace keeps its metadata and artifacts.

    ``database_url`` defaults to a SQLite file in ``home`` and ``artifacts_url`` to a folder in
    ``home``; either may point at PostgreSQL / an S3 bucket instead. ``online_store_url`` is the
    online feature store: a SQLite file in ``home`` by default, or ``redis://host:port/db``.
    ``admin_token`` guards the server's admin API (disabled without it); ``inference_token``,
    when set, guards inference.
    """

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Path(".shipyard")
    database_url: str | None = None
    artifacts_url: str | None = None
    s3_endpoint_url: str | None = None
    online_store_url: str | None = None
    event_log_url: str | None = None
    user: str | None = None
    admin_token: SecretStr | None = None
    inference_token: SecretStr | None = None

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str(self.home / "artifacts")

    @property
    def resolved_online_store_url(self) -> str:
        return self.online_store_url or f"sqlite:///{self.home / 'online.db'}"

    @property
    def resolved_event_log_url(self) -> str:
        """The prediction/outcome log: the metadata database when it is PostgreSQL, else
        Parquet files in ``<home>/events``."""
        if self.event_log_url:
            return self.event_log_url
        database = self.resolved_database_url
        if database.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
            return database
        return str(self.home / "events")

    @property
    def cache_dir(self) -> Path:
        """Local copies of remote artifacts, verified before use."""
        return self.home / "cache"
