"""Rules over an alias's history: where it pointed at a given time, and where a rollback goes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shipyard.errors import Conflict
from shipyard.records import AliasEvent


def version_at(events: Sequence[AliasEvent], at: datetime) -> int | None:
    """The version the alias pointed at, at time ``at`` (None if unset). Events oldest first."""
    current: int | None = None
    for event in events:
        if event.at > at:
            break
        current = event.version
    return current


def rollback_target(events: Sequence[AliasEvent]) -> int:
    """The version a rollback moves the alias to: undo the latest assignment still in force.

    Assignments form a stack: ``set`` and ``delete`` push, a ``rollback`` pops back to the
    version it restored, so repeated rollbacks walk back through earlier versions (3 → 2 → 1).
    Deleted states and repeats of the current version are skipped. Events are oldest first.
    """
    stack: list[int | None] = []
    for event in events:
        if event.action == "rollback":
            while stack and stack[-1] != event.version:
                stack.pop()
            if not stack:
                stack.append(event.version)
        else:
            stack.append(event.version)
    current = stack[-1] if stack else None
    for version in reversed(stack[:-1]):
        if version is not None and version != current:
            return version
    name = events[-1].name if events else "?"
    alias = events[-1].alias if events else "?"
    raise Conflict(f"alias {alias!r} of model {name!r} has no earlier version to roll back to")
