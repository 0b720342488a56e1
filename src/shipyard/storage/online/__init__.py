"""Online feature stores: the latest feature values per entity, for serving.

``open_online_store(url)`` picks the backend from the URL scheme:

- ``sqlite:///PATH`` — the embedded default, one SQLite file. As for the metadata database (and
  SQLAlchemy), everything after ``sqlite:///`` is the path: ``sqlite:///online.db`` is relative to
  the working directory, ``sqlite:////var/lib/shipyard/online.db`` is absolute.
- ``redis://[user:password@]host:port/db`` or ``rediss://...`` (TLS) — a Redis server
  (``pip install 'shipyard[redis]'``).

The rules every backend follows (newest row per key wins, TTL left to the caller) are in ``base``.
"""

from __future__ import annotations

from shipyard.errors import InvalidInput
from shipyard.storage.online.base import OnlineRow, OnlineStore
from shipyard.storage.online.redis import RedisOnlineStore, redacted
from shipyard.storage.online.sqlite import SQLiteOnlineStore


def open_online_store(url: str) -> OnlineStore:
    """The online store at ``url``: ``sqlite:///PATH``, ``redis://HOST:PORT/DB`` or ``rediss://``."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    match scheme:
        case "sqlite":
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
            if not path or path == ":memory:":
                raise InvalidInput(
                    f"online store URL {url!r} names no file; use sqlite:///PATH "
                    "(sqlite:////ABSOLUTE/PATH for an absolute path)",
                    field="SHIPYARD_ONLINE_STORE_URL",
                )
            return SQLiteOnlineStore(path)
        case "redis" | "rediss":
            return RedisOnlineStore(url)
        case _:
            raise InvalidInput(
                f"online store URL {redacted(url)!r} is not supported; use sqlite:///PATH, "
                "redis://HOST:PORT/DB or rediss://HOST:PORT/DB",
                field="SHIPYARD_ONLINE_STORE_URL",
            )


__all__ = [
    "OnlineRow",
    "OnlineStore",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "open_online_store",
]
