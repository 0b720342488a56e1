"""``shipyard models``: registered models, their versions, lineage and archive state."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli import aliases
from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, fmt, print_fields, print_table
from shipyard.cli.runs import print_run
from shipyard.core.identifiers import ModelRef
from shipyard.records import ModelVersion, RegisteredModel

app = typer.Typer(
    help="Registered models, versions, aliases and lineage.", invoke_without_command=True
)
app.add_typer(aliases.app, name="alias")
app.callback()(require_command)


def _is_uri(value: str) -> bool:
    return "/" in value or "@" in value


@app.command("list")
def list_models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List registered models with their latest version and aliases."""
    models = workspace(ctx).registry.list_models()
    if as_json:
        emit_json(models)
        return
    print_table(
        "models",
        ["name", "latest", "aliases", "updated", "description"],
        ([m.name, m.latest_version, m.aliases, m.updated_at, m.description] for m in models),
        empty="no models registered yet",
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name_or_uri: Annotated[
        str,
        typer.Argument(
            metavar="NAME_OR_URI", help="A model name, or a version URI: churn@production, churn/3."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Show a model (aliases, tags, versions) or, given a URI, one version."""
    registry = workspace(ctx).registry
    if _is_uri(name_or_uri):
        version = registry.resolve(name_or_uri)
        if as_json:
            emit_json(version)
        else:
            print_version(version)
        return
    model = registry.get_model(name_or_uri)
    versions = registry.list_versions(name_or_uri)
    if as_json:
        emit_json({"model": model, "versions": versions})
        return
    print_model(model)
    print_versions(versions)


@app.command("versions")
def versions(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    as_json: JsonFlag = False,
) -> None:
    """List every version of a model, archived ones included."""
    found = workspace(ctx).registry.list_versions(name)
    if as_json:
        emit_json(found)
        return
    print_versions(found)


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    uri: Annotated[str, typer.Argument(help="A version URI: churn@production, models:/churn/3.")],
    as_json: JsonFlag = False,
) -> None:
    """Show how a version was made: its run's params, metrics, datasets and code version."""
    found = workspace(ctx).lineage(uri)
    if as_json:
        emit_json(found)
        return
    print_version(found.version)
    if found.run is None:
        typer.echo(f"{found.version.uri} was registered outside a run; no lineage recorded")
        return
    print_run(found.run)


@app.command("archive")
def archive(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(min=1, help="The version number.")],
    restore: Annotated[bool, typer.Option("--restore", help="Make it ready again.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Archive a version (refused while an alias points at it), or restore it."""
    changed = workspace(ctx).registry.archive(name, version, archived=not restore)
    if as_json:
        emit_json(changed)
        return
    typer.echo(f"{changed.uri} is now {changed.status.value}")


@app.command("optimize")
def optimize(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Option("--version", min=1, help="The version to convert.")],
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            min=0.0,
            help="The largest absolute difference allowed between the source's and the ONNX "
            "model's outputs.",
        ),
    ] = 1e-5,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="The ONNX input's float type: float32 (default) or float64 (scikit-learn "
            "models other than trees).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Convert a version to ONNX, check that it answers like the source, register it.

    The source and the ONNX model predict on the stored input example plus 1,000 synthetic rows
    spanning its ranges; when they differ by more than the tolerance nothing is registered.
    """
    result = workspace(ctx).optimize_model(
        ModelRef(name, version=version), tolerance=tolerance, precision=precision
    )
    if as_json:
        emit_json(result)
        return
    print_fields(
        f"{result.version.uri} (onnx) converted from {result.source}",
        {
            "max abs diff": result.max_abs_diff,
            "mean abs diff": result.mean_abs_diff,
            "rows compared": result.rows,
            "tolerance": result.tolerance,
            "run": result.version.run_id,
        },
    )


def print_model(model: RegisteredModel) -> None:
    print_fields(
        f"model {model.name}",
        {
            "description": model.description,
            "latest version": model.latest_version,
            "aliases": dict(sorted(model.aliases.items())),
            "tags": dict(sorted(model.tags.items())),
            "created": model.created_at,
            "updated": model.updated_at,
        },
    )


def print_version(version: ModelVersion) -> None:
    print_fields(
        version.uri,
        {
            "status": version.status,
            "flavor": version.flavor,
            "aliases": version.aliases,
            "tags": dict(sorted(version.tags.items())),
            "run": version.run_id,
            "created": version.created_at,
            "created by": version.created_by,
            "description": version.description,
            "inputs": fmt(_signature_inputs(version)),
            "artifact": f"{version.artifact.digest} ({version.artifact.size} bytes)",
        },
    )


def print_versions(found: list[ModelVersion]) -> None:
    print_table(
        "versions",
        ["version", "status", "flavor", "aliases", "run", "created", "by"],
        (
            [v.version, v.status, v.flavor, v.aliases, v.run_id, v.created_at, v.created_by]
            for v in found
        ),
        empty="no versions",
    )


def _signature_inputs(version: ModelVersion) -> object:
    """The input columns (name: dtype) or tensor spec recorded in a version's signature."""
    inputs = version.signature.get("inputs", {})
    columns = inputs.get("columns") if isinstance(inputs, dict) else None
    if isinstance(columns, list):
        return {str(c.get("name")): c.get("dtype") for c in columns if isinstance(c, dict)}
    return inputs
