"""What every command gets: the settings read once at start-up and a workspace opened on demand."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from shipyard.settings import Settings
from shipyard.workspace import Workspace


class CliState:
    """Held in the click context; opens the workspace the first time a command needs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._workspace: Workspace | None = None

    def workspace(self, ctx: typer.Context) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(self.settings)
            ctx.find_root().call_on_close(self._workspace.close)
        return self._workspace


def state(ctx: typer.Context) -> CliState:
    """The state the root callback put in the context."""
    found = ctx.find_object(CliState)
    if found is None:  # a command invoked without the root callback (never from main())
        found = CliState(Settings())
        ctx.find_root().obj = found
    return found


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace the settings describe, migrated and ready."""
    return state(ctx).workspace(ctx)


def require_command(ctx: typer.Context) -> None:
    """A group's callback: called without a sub-command, fail with one line naming them."""
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        names = ctx.command.list_commands(ctx) if isinstance(ctx.command, TyperGroup) else []
        ctx.fail(f"missing command; choose one of: {', '.join(names)}")
