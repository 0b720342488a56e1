"""``shipyard runs``: list tracked runs and show everything one run recorded."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, print_fields, print_table
from shipyard.records import Run

app = typer.Typer(help="Tracked training runs.", invoke_without_command=True)
app.callback()(require_command)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    runs = workspace(ctx).tracker.list_runs(experiment, limit=limit)
    if as_json:
        emit_json(runs)
        return
    print_table(
        "runs",
        ["run id", "experiment", "status", "started", "metrics"],
        ([r.run_id, r.experiment, r.status, r.start_time, _metrics_cell(r)] for r in runs),
        empty="no runs yet" if experiment is None else f"no runs in experiment {experiment!r}",
    )


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a run: params, metrics, tags, datasets, artifacts and the environment it ran in."""
    run = workspace(ctx).tracker.get_run(run_id)
    if as_json:
        emit_json(run)
        return
    print_run(run)


def print_run(run: Run) -> None:
    """A run's summary followed by its params, metrics, tags, datasets and artifacts."""
    print_fields(
        f"run {run.run_id}",
        {
            "experiment": run.experiment,
            "name": run.name,
            "status": run.status,
            "error": run.error,
            "started": run.start_time,
            "ended": run.end_time,
            "user": run.user,
            "git commit": run.git_commit,
            "git dirty": run.git_dirty,
            "python": run.python_version,
            "packages": run.packages,
            "seed": run.seed,
        },
    )
    print_table("params", ["name", "value"], sorted(run.params.items()), empty="no params")
    print_table(
        "metrics (latest)", ["name", "value"], sorted(run.metrics.items()), empty="no metrics"
    )
    print_table("tags", ["name", "value"], sorted(run.tags.items()), empty="no tags")
    print_table(
        "datasets",
        ["name", "rows", "columns", "fingerprint"],
        ([d.name, d.num_rows, len(d.schema), d.fingerprint] for d in run.datasets),
        empty="no datasets",
    )
    print_table(
        "artifacts",
        ["path", "size", "sha256"],
        ([a.path, a.size, a.sha256] for a in run.artifacts),
        empty="no artifacts",
    )


def _metrics_cell(run: Run) -> str:
    return "\n".join(f"{key}={value:.4g}" for key, value in sorted(run.metrics.items())) or "-"
