"""How the CLI shows things: rich tables for people, JSON on stdout for scripts."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shipyard.records import ModelVersion

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]


def to_jsonable(value: Any) -> Any:
    """Records, enums, datetimes (ISO-8601) and paths as plain JSON values."""
    if isinstance(value, ModelVersion):
        return {**_dataclass_dict(value), "uri": value.uri}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_dict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN is not JSON
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def _dataclass_dict(value: Any) -> dict[str, Any]:
    return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}


def emit_json(value: Any) -> None:
    """Write ``value`` to stdout as indented JSON (no colours, no wrapping)."""
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def fmt(value: Any) -> str:
    """One cell: datetimes in UTC to the second, None as a dash, mappings as ``k=v`` pairs."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat(sep=" ", timespec="seconds")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def print_table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str
) -> None:
    """A table of ``rows``; ``empty`` is printed instead when there are none.

    The first column (an id or name) and columns of times or numbers are never wrapped.
    """
    raw = [list(row) for row in rows]
    out = console()
    if not raw:
        out.print(empty, markup=False)
        return
    table = Table(
        title=Text(title) if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for index, column in enumerate(columns):
        atomic = index == 0 or all(isinstance(row[index], datetime | int) for row in raw)
        table.add_column(column, overflow="fold", no_wrap=atomic)
    for row in raw:
        table.add_row(*(Text(fmt(cell)) for cell in row))  # Text: user values are not markup
    out.print(table)


def print_fields(title: str, fields: Mapping[str, Any]) -> None:
    """A two-column table of named values."""
    table = Table(
        title=Text(title), title_justify="left", show_header=False, box=box.SIMPLE, pad_edge=False
    )
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        table.add_row(Text(key), Text(fmt(value)))
    console().print(table)
