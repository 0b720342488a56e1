"""The ``shipyard`` command: the typer app, logging set-up and the one place errors are printed.

Every :class:`~shipyard.errors.ShipyardError` and every usage error becomes one line on stderr,
``error: <message>``, and exit code 2 — no traceback, no usage dump.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Annotated

import pydantic
import typer

from shipyard import __version__
from shipyard.cli import demo, deployments, experiments, features, models, monitor, runs, serve
from shipyard.cli.context import CliState, require_command, state, workspace
from shipyard.cli.render import JsonFlag, emit_json, print_fields
from shipyard.errors import InvalidInput, ShipyardError
from shipyard.settings import Settings

USAGE_EXIT = 2

app = typer.Typer(
    name="shipyard",
    help="Track training runs, register and serve models, and manage their features.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(features.app, name="features")
app.add_typer(monitor.app, name="monitor")
app.add_typer(deployments.app, name="deployments")
app.add_typer(experiments.app, name="experiments")
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"shipyard {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log INFO messages.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Track training runs, register models and move their aliases.

    The workspace comes from SHIPYARD_* environment variables (SHIPYARD_HOME, default ./.shipyard).
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    ctx.obj = CliState(_read_settings())
    require_command(ctx)


def _read_settings() -> Settings:
    try:
        return Settings()
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"SHIPYARD_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidInput(f"invalid settings: {problems}") from None


@app.command("init")
def init(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Create the workspace (metadata DB, migrated; artifact store) and say where each lives."""
    settings = state(ctx).settings
    existed = settings.home.exists()
    ws = workspace(ctx)
    where = {
        "home": settings.home,
        "database": ws.database.safe_url,
        "artifacts": settings.resolved_artifacts_url,
        "cache": settings.cache_dir,
    }
    if as_json:
        emit_json({**where, "created": not existed})
        return
    verb = "is ready" if existed else "created"
    print_fields(f"workspace {verb}", where)


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _fail(message: str, code: int = USAGE_EXIT) -> int:
    typer.echo(f"error: {_one_line(message)}", err=True)
    return code


def _usage_message(exc: typer.TyperException) -> str:
    """A usage error as one sentence, pointing at the help of the command it concerns."""
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return exc.format_message()
    return f"{exc.format_message()} (see '{ctx.command_path} --help')"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: the process arguments); returns the exit code."""
    try:
        result = app(
            args=list(argv) if argv is not None else None,
            prog_name="shipyard",
            standalone_mode=False,
        )
    except ShipyardError as exc:
        return _fail(exc.message)
    except typer.TyperException as exc:  # usage errors and the other errors of the click layer
        return _fail(_usage_message(exc), getattr(exc, "exit_code", USAGE_EXIT))
    except typer.Abort:
        return _fail("aborted", 1)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
