"""What every online store stores: the latest row per (view, entity key), and the rules for it.

Storage sees opaque string keys (the feature layer encodes entity keys) and a ``view`` namespace.
A write keeps, per key, the row with the larger ``(event_ts, created_ts)``: an older row
never overwrites a newer one, so materialisation can be re-run, resumed or raced by a push and the
store ends at the same state. A row whose timestamps equal the stored ones replaces it only when its
values differ (a corrected source re-materialised); rewriting identical rows changes nothing.

TTL is not a storage concern: whether a value is too old depends on the time of the request (or
the spine time in a parity check), so the caller compares ``event_ts`` with it at read time. An
expiry set in storage would make a value vanish at a time the caller did not choose, and turn
``OUTSIDE_TTL`` into ``NOT_FOUND``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from shipyard.errors import InvalidInput

_VIEW = re.compile(r"[A-Za-z0-9_@.:-]{1,200}")
# Values are JSON scalars; numpy scalars are accepted and read back as Python ones. NaN and
# infinities are written as JSON null and read back as None. Keys are sorted so that the same values
# always encode to the same bytes (an identical rewrite is recognised as one).
_VALUES_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS


@dataclass(frozen=True, slots=True)
class OnlineRow:
    """The latest known values of one entity in one view."""

    key: str
    """The encoded entity key."""
    event_ts: float
    """Event time, seconds since the epoch (UTC)."""
    created_ts: float
    """Tie-break when event times are equal; 0.0 when the view has no created timestamp."""
    values: Mapping[str, Any]
    """Feature name -> JSON scalar (float, int, bool, str or None)."""


class OnlineStore(Protocol):
    """An online feature store: upserts that keep the newest row per key, and batched reads."""

    url: str
    """Where the store lives, safe to print (no password)."""

    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        """Upsert ``rows``, keeping per key the row with the larger ``(event_ts, created_ts)``;
        returns how many rows changed the store (0 for a rewrite of what is stored)."""
        ...

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRow | None]:
        """The stored row of each key, in the order of ``keys`` (duplicates allowed); None when
        the view holds nothing for a key."""
        ...

    def delete_view(self, view: str) -> int:
        """Delete every row of ``view``; returns how many were deleted."""
        ...

    def close(self) -> None: ...


def check_view(view: str) -> str:
    if not isinstance(view, str) or _VIEW.fullmatch(view) is None:
        raise InvalidInput(
            f"online store view name {view!r} is not valid; use 1-200 characters from "
            "A-Z a-z 0-9 _ @ . : -",
            field="view",
        )
    return view


def row_timestamps(row: OnlineRow) -> tuple[float, float]:
    """The row's ``(event_ts, created_ts)`` as finite floats, or InvalidInput naming the key."""
    event_ts = float(row.event_ts)
    created_ts = float(row.created_ts)
    if not (math.isfinite(event_ts) and math.isfinite(created_ts)):
        raise InvalidInput(
            f"online row for key {row.key!r} has event_ts={row.event_ts!r}, "
            f"created_ts={row.created_ts!r}; both must be finite seconds since the epoch",
            field="event_ts",
        )
    return event_ts, created_ts


def encode_values(row: OnlineRow) -> bytes:
    try:
        return orjson.dumps(row.values, option=_VALUES_OPTIONS)
    except TypeError as exc:
        raise InvalidInput(
            f"online row for key {row.key!r} has values that are not JSON scalars: {exc}",
            field="values",
        ) from exc
