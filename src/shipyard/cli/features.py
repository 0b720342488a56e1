"""``shipyard features``: apply definitions, list and show them, materialise to the online store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, print_fields, print_table
from shipyard.features.catalog import KINDS
from shipyard.features.materialize import MaterializeResult
from shipyard.features.store import FeatureStore

app = typer.Typer(
    help="Feature definitions, materialisation and the online store.", invoke_without_command=True
)
app.callback()(require_command)

Views = Annotated[
    list[str] | None,
    typer.Option(
        "--view", "-v", help="Only this feature view (repeatable); default: every online view."
    ),
]


def _loaded(ctx: typer.Context) -> FeatureStore:
    store = workspace(ctx).features
    store.load()
    return store


def _parse_time(value: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time; use e.g. 2026-03-03T12:00:00+00:00",
            param_hint=f"'{option}'",
        ) from None


@app.command("apply")
def apply(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="A Python file defining entities, views and services.")
    ],
    new_version: Annotated[
        bool,
        typer.Option(
            "--new-version",
            help="Accept incompatible changes (removed features, changed dtypes) as new versions.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Store the definitions in a file; every changed definition becomes a new version."""
    changes = workspace(ctx).features.apply_file(path, new_version=new_version)
    if as_json:
        emit_json(changes)
        return
    print_table(
        f"applied {path}",
        ["kind", "name", "version", "change", "detail"],
        ([c.kind, c.name, c.version, c.action, c.detail] for c in changes),
        empty="nothing to apply",
    )


@app.command("list")
def list_definitions(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option("--kind", help=f"Only one kind: {', '.join(KINDS)}.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every applied definition at its latest version."""
    records = workspace(ctx).features.catalog.list_definitions(kind)
    if as_json:
        emit_json(records)
        return
    print_table(
        "feature definitions",
        ["name", "kind", "version", "features", "applied", "by"],
        (
            [
                r.name,
                r.kind,
                r.version,
                [f["name"] if isinstance(f, dict) else f for f in r.spec.get("features", [])],
                r.created_at,
                r.created_by,
            ]
            for r in records
        ),
        empty="no feature definitions applied yet (shipyard features apply FILE)",
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A definition's name.")],
    version: Annotated[int | None, typer.Option("--version", min=1, help="This version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """One definition's spec (the latest version unless --version), with its version history."""
    catalog = workspace(ctx).features.catalog
    records = catalog.find_definition(name)
    if not records:
        catalog.get_definition("feature_view", name)  # raises NotFound naming what exists
    chosen = [r for r in records if version is None or r.version == version]
    if not chosen:
        catalog.get_definition(records[0].kind, name, version)
    record = chosen[0]
    if as_json:
        emit_json({"definition": record, "versions": [r.version for r in records]})
        return
    print_fields(
        f"{record.kind.replace('_', ' ')} {record.name} v{record.version}",
        {
            "versions": [r.version for r in records if r.kind == record.kind],
            "breaking": record.breaking,
            "applied": record.created_at,
            "by": record.created_by,
            "fingerprint": record.fingerprint,
            "spec": orjson.dumps(record.spec, option=orjson.OPT_INDENT_2).decode(),
        },
    )


def _report(results: list[MaterializeResult], as_json: bool) -> None:
    if as_json:
        emit_json(results)
        return
    print_table(
        "materialised",
        ["view", "version", "start", "end", "entities", "rows changed", "violations"],
        (
            [
                r.view,
                r.version,
                r.start,
                r.end,
                r.rows_read,
                r.rows_written,
                "reference set" if r.reference_set else [v["message"] for v in r.violations],
            ]
            for r in results
        ),
        empty="nothing to materialise: every view is up to date",
    )


@app.command("materialize")
def materialize(
    ctx: typer.Context,
    start: Annotated[
        str, typer.Option("--start", help="ISO-8601 start (inclusive); naive is UTC.")
    ],
    end: Annotated[str, typer.Option("--end", help="ISO-8601 end (exclusive); naive is UTC.")],
    views: Views = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the newest value per entity with start ≤ event time < end to the online store."""
    results = _loaded(ctx).materialize(
        _parse_time(start, "--start"), _parse_time(end, "--end"), views=views
    )
    _report(results, as_json)


@app.command("materialize-incremental")
def materialize_incremental(
    ctx: typer.Context,
    end: Annotated[
        str | None, typer.Option("--end", help="ISO-8601 end (exclusive); default: now.")
    ] = None,
    views: Views = None,
    as_json: JsonFlag = False,
) -> None:
    """Materialise each view from its stored watermark (first time: from end − ttl) to end."""
    results = _loaded(ctx).materialize_incremental(
        None if end is None else _parse_time(end, "--end"), views=views
    )
    _report(results, as_json)
