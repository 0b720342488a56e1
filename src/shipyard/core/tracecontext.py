"""W3C Trace Context (``traceparent``): parse an incoming header, derive the server's span.

Version 00 form: ``00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>``, lower-case hex,
all-zero ids invalid, version ``ff`` invalid; a higher version is read by its first four fields
when the header is at least 55 characters and correctly dashed. Invalid headers start a new trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = re.compile(r"[0-9a-f]+")
SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str  # this server's span
    parent_id: str | None  # the caller's span, when the trace was continued
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def header(self) -> str:
        """The ``traceparent`` to send on: our span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def _valid(value: str, length: int) -> bool:
    return len(value) == length and bool(_HEX.fullmatch(value)) and value != "0" * length


def parse_traceparent(header: str | None) -> tuple[str, str, int] | None:
    """(trace-id, parent-id, flags) of a valid header, else None."""
    if not header:
        return None
    header = header.strip()
    parts = header.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, parent_id, flags = parts[:4]
    if len(version) != 2 or not _HEX.fullmatch(version) or version == "ff":
        return None
    if version == "00" and (len(parts) != 4 or len(header) != 55):
        return None
    if version != "00" and (len(header) < 55 or (len(header) > 55 and header[55] != "-")):
        return None
    if not (_valid(trace_id, 32) and _valid(parent_id, 16)):
        return None
    if len(flags) != 2 or not _HEX.fullmatch(flags):
        return None
    return trace_id, parent_id, int(flags, 16)


def continue_trace(header: str | None, new_span_id: str, new_trace_id: str) -> TraceContext:
    """The server's context: a child of the caller's span, or a new sampled trace.

    ``new_span_id`` (16 hex) and ``new_trace_id`` (32 hex) are random ids the caller supplies, so
    this stays a pure function.
    """
    parsed = parse_traceparent(header)
    if parsed is None:
        return TraceContext(new_trace_id, new_span_id, None, SAMPLED | 0x02)
    trace_id, parent_id, flags = parsed
    return TraceContext(trace_id, new_span_id, parent_id, flags & 0x03)
