"""The scale-out online store: a Redis server (``redis://`` or ``rediss://`` for TLS), via redis-py.

Each row is one string key, ``shipyard:fs:<view>/<entity key>`` (``/`` cannot occur in a view
name, so no view's keys are a prefix-match of another's), holding
``[event_ts, created_ts, {values}]`` as JSON. A read is one ``MGET``. A write runs a Lua script
per batch of 1,000 rows (``EVALSHA`` in one pipeline) that compares each row's timestamps with the
stored ones on the server, atomically, so concurrent writers and re-runs keep the newer row (rules
in ``base``). ``delete_view`` walks the view's keys with ``SCAN`` and deletes them with ``UNLINK``
in batches; rows written to the view while it runs may survive.

The script touches many keys at once, so the keys of one batch must live on one server: Redis
Cluster is not supported. TTL is left to the caller (see ``base``): no key has an expiry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from shipyard.errors import StorageUnavailable, require_package
from shipyard.storage.online.base import OnlineRow, check_view, encode_values, row_timestamps

PREFIX = "shipyard:fs:"
_WRITE_BATCH = 1_000
_DELETE_BATCH = 1_000
_CONNECT_TIMEOUT_S = 5.0

# KEYS: the rows' Redis keys; ARGV: their encodings "[event_ts,created_ts,{...}]", same order.
# Returns how many keys it set.
_UPSERT = """
local changed = 0
for i, key in ipairs(KEYS) do
  local new = ARGV[i]
  local old = redis.call('GET', key)
  local newer = true
  if old then
    if old == new then
      newer = false
    else
      local oe, oc = string.match(old, '^%[([^,]+),([^,]+),')
      local ne, nc = string.match(new, '^%[([^,]+),([^,]+),')
      oe, oc, ne, nc = tonumber(oe), tonumber(oc), tonumber(ne), tonumber(nc)
      newer = ne > oe or (ne == oe and nc >= oc)
    end
  end
  if newer then
    redis.call('SET', key, new)
    changed = changed + 1
  end
end
return changed
"""


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisOnlineStore:
    """The online store in the Redis database at ``url`` (``redis://[user:password@]host:port/db``).

    Connects (and checks the connection) when created; an unreachable server is
    :class:`StorageUnavailable`. The client is thread-safe (a connection pool)."""

    def __init__(self, url: str) -> None:
        redis = require_package("redis", "redis")
        self.url = redacted(url)
        # Unreachable, timed out, loading, read-only replica, out of memory...: all unavailable.
        self._errors_caught: type[BaseException] = redis.exceptions.RedisError
        self._no_script: type[BaseException] = redis.exceptions.NoScriptError
        self._closed = False
        with self._errors("connecting"):
            self._client: Any = redis.Redis.from_url(
                url, socket_connect_timeout=_CONNECT_TIMEOUT_S, health_check_interval=30
            )
            self._client.ping()
            self._upsert_sha: str = self._client.script_load(_UPSERT)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._errors_caught as exc:
            raise self._unavailable(exc, doing) from exc

    def _unavailable(self, exc: BaseException, doing: str) -> StorageUnavailable:
        return StorageUnavailable(f"online store {self.url}: {doing} failed: {exc}")

    def _live(self) -> Any:
        """The client, unless the store is closed (redis-py itself would quietly reconnect)."""
        if self._closed:
            raise StorageUnavailable(f"online store {self.url} is closed")
        return self._client

    # ---------------------------------------------------------------------- the protocol
    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        prefix = PREFIX + check_view(view) + "/"
        keys = [prefix + row.key for row in rows]
        encoded = [_encode(row) for row in rows]
        if not keys:
            return 0
        with self._errors(f"writing {len(keys)} rows to view {view!r}"):
            try:
                return self._run_upserts(keys, encoded)
            except self._no_script:
                # The server lost its script cache (a restart, SCRIPT FLUSH): load it again. The
                # batches that did run are re-run harmlessly, since an upsert is idempotent.
                self._upsert_sha = self._client.script_load(_UPSERT)
                return self._run_upserts(keys, encoded)

    def _run_upserts(self, keys: list[str], encoded: list[bytes]) -> int:
        pipe = self._live().pipeline(transaction=False)
        for start in range(0, len(keys), _WRITE_BATCH):
            batch = keys[start : start + _WRITE_BATCH]
            pipe.evalsha(
                self._upsert_sha, len(batch), *batch, *encoded[start : start + _WRITE_BATCH]
            )
        return sum(int(changed) for changed in pipe.execute())

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRow | None]:
        prefix = PREFIX + check_view(view) + "/"
        if not keys:
            return []
        try:
            found = self._live().mget([prefix + key for key in keys])
        except self._errors_caught as exc:  # not _errors(): this is the hot path
            raise self._unavailable(exc, f"reading view {view!r}") from exc
        rows: list[OnlineRow | None] = []
        for key, value in zip(keys, found, strict=True):
            if value is None:
                rows.append(None)
            else:
                event_ts, created_ts, values = orjson.loads(value)
                rows.append(OnlineRow(key, event_ts, created_ts, values))
        return rows

    def delete_view(self, view: str) -> int:
        pattern = PREFIX + check_view(view) + "/*"
        deleted = 0
        client = self._live()
        with self._errors(f"deleting view {view!r}"):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=_DELETE_BATCH):
                batch.append(key)
                if len(batch) >= _DELETE_BATCH:
                    deleted += int(client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(client.unlink(*batch))
        return deleted

    def close(self) -> None:
        self._closed = True
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self.url!r})"


def _encode(row: OnlineRow) -> bytes:
    event_ts, created_ts = row_timestamps(row)
    # repr() of a float is its shortest exact form, which both Lua's tonumber and orjson read back.
    return f"[{event_ts!r},{created_ts!r},".encode() + encode_values(row) + b"]"
