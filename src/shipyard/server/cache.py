"""An optional response cache per model version: LRU over the normalised input of a request."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from shipyard.core.signature import Batch


def batch_key(batch: Batch) -> bytes:
    """The validated input as bytes: equal for equal inputs whatever JSON form they came in
    (a numeric table is keyed by its float64 row-major matrix, however it was sent)."""
    rows = batch.num_rows.to_bytes(8, "little")
    values = batch.values()
    if all(v.dtype.kind in "fiub" for v in values):
        return rows + batch.matrix(np.float64).tobytes()
    parts = [rows]
    for column in values:
        if column.dtype.kind in "OUS":
            parts.append(b"\x1f".join(str(v).encode() for v in column.ravel()))
        else:
            parts.append(column.dtype.str.encode() + np.ascontiguousarray(column).tobytes())
    return b"\x1e".join(parts)


class ResponseCache:
    """At most ``size`` answers; the least recently used is evicted first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, np.ndarray[Any, Any]] = OrderedDict()

    def get(self, key: bytes) -> np.ndarray[Any, Any] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: bytes, output: np.ndarray[Any, Any]) -> None:
        output.flags.writeable = False  # shared by later answers: nobody may change it
        self._entries[key] = output
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
