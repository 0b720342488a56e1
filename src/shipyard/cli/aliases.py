"""``shipyard models alias``: move an alias, read its history, roll it back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, fmt, print_table
from shipyard.records import AliasEvent

app = typer.Typer(
    help="Aliases (production, staging…) and their audit history.", invoke_without_command=True
)
app.callback()(require_command)

Reason = Annotated[str | None, typer.Option("--reason", "-r", help="Why; kept in the history.")]


@app.command("set")
def set_alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Argument(help="The alias, e.g. production.")],
    version: Annotated[int, typer.Argument(min=1, help="The version it should point at.")],
    reason: Reason = None,
    as_json: JsonFlag = False,
) -> None:
    """Point an alias at a version (who, when and why are recorded)."""
    event = workspace(ctx).registry.set_alias(name, alias, version, reason=reason)
    _report(event, as_json)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Argument(help="The alias to move back.")],
    reason: Reason = None,
    as_json: JsonFlag = False,
) -> None:
    """Move an alias back to the version it pointed at before."""
    event = workspace(ctx).registry.rollback(name, alias, reason=reason)
    _report(event, as_json)


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str | None, typer.Argument(help="Only this alias.")] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="ISO_TIME",
            help="Print which version ALIAS pointed at then, e.g. 2026-03-03T12:00:00+00:00.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every change of a model's aliases, oldest first; with --at, where one pointed at a time."""
    registry = workspace(ctx).registry
    if at is not None:
        if alias is None:
            raise typer.BadParameter("--at needs an ALIAS argument", param_hint="'--at'")
        when = _parse_time(at)
        number = registry.alias_version_at(name, alias, when)
        if as_json:
            emit_json({"name": name, "alias": alias, "at": when, "version": number})
        elif number is None:
            typer.echo(f"{name}@{alias} pointed at no version at {fmt(when)}")
        else:
            typer.echo(f"{name}@{alias} pointed at version {number} at {fmt(when)}")
        return
    events = registry.alias_history(name, alias)
    if as_json:
        emit_json(events)
        return
    print_table(
        f"alias history of {name}" + (f"@{alias}" if alias else ""),
        ["when", "alias", "action", "from", "to", "by", "reason"],
        (
            [e.at, e.alias, e.action, e.previous_version, e.version, e.actor, e.reason]
            for e in events
        ),
        empty=f"no alias changes recorded for {name}" + (f"@{alias}" if alias else ""),
    )


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time; use e.g. 2026-03-03T12:00:00+00:00",
            param_hint="'--at'",
        ) from None


def _report(event: AliasEvent, as_json: bool) -> None:
    if as_json:
        emit_json(event)
        return
    was = f"version {event.previous_version}" if event.previous_version is not None else "unset"
    typer.echo(
        f"{event.name}@{event.alias} -> version {event.version} (was {was}; "
        f"{event.action} by {event.actor or 'unknown'}"
        + (f": {event.reason}" if event.reason else "")
        + ")"
    )
