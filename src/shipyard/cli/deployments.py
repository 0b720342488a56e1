"""``shipyard deployments``: what each deployment serves and how its traffic is split.

Every change is audit-logged (``history``) and reaches every server replica on its next refresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
import yaml

from shipyard import rollout
from shipyard.cli.context import require_command, workspace
from shipyard.cli.render import JsonFlag, emit_json, print_fields, print_table
from shipyard.errors import InvalidInput, NotFound
from shipyard.experiments.spec import BlueGreen, variants_of
from shipyard.experiments.store import Change, DeploymentState

app = typer.Typer(
    help="Deployment strategies: single, blue-green, canary, shadow, A/B test, bandit.",
    invoke_without_command=True,
)
app.callback()(require_command)

Name = Annotated[str, typer.Argument(help="The deployment (the endpoint's model name).")]
Reason = Annotated[
    str | None, typer.Option("--reason", help="Why: kept in the deployment's history.")
]


def read_document(path: Path, what: str) -> dict[str, Any]:
    """A YAML (or JSON) file holding one mapping."""
    if not path.is_file():
        raise InvalidInput(f"{what} file {str(path)!r} does not exist", field="file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"{what} file {str(path)!r} is not valid YAML: {exc}", field="file"
        ) from None
    if not isinstance(document, dict):
        raise InvalidInput(
            f"{what} file {str(path)!r} must hold a mapping with 'type' "
            f"(single, blue_green, canary, shadow, ab_test, bandit)",
            field="file",
        )
    return document


def state_document(state: DeploymentState) -> dict[str, Any]:
    """A deployment's state as JSON-able values."""
    return {
        "deployment": state.deployment,
        "revision": state.revision,
        "type": state.strategy.type,
        "strategy": state.strategy.model_dump(mode="json"),
        "experiment": state.experiment,
        "weights": None if state.weights is None else list(state.weights),
        "salt": state.salt,
        "updated_at": state.updated_at,
    }


def print_state(state: DeploymentState, title: str) -> None:
    variants = variants_of(state.strategy)
    weights: Any = "-"
    if state.weights is not None:
        weights = {v.name: w for v, w in zip(variants, state.weights, strict=False)}
    print_fields(
        title,
        {
            "type": state.strategy.type,
            "revision": state.revision,
            "experiment": state.experiment,
            "models": {v.name: v.model for v in variants},
            "weights": weights,
            "updated": state.updated_at,
            "settings": orjson.dumps(
                state.strategy.model_dump(mode="json", exclude_defaults=True)
            ).decode(),
        },
    )


def _report(state: DeploymentState, as_json: bool) -> None:
    if as_json:
        emit_json(state_document(state))
        return
    print_state(state, f"deployment {state.deployment}, revision {state.revision}")


@app.command("show")
def show(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """The deployment's strategy, revision, running experiment and weights."""
    state = workspace(ctx).rollouts.state(name)
    if state is None:
        raise NotFound(
            f"deployment {name!r} has no strategy set: it serves its configured model "
            f"(set one with 'shipyard deployments set {name} --model URI')"
        )
    _report(state, as_json)


@app.command("set")
def set_strategy(
    ctx: typer.Context,
    name: Name,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A strategy in YAML (a mapping with type).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Serve this model URI alone (single).")
    ] = None,
    reason: Reason = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace the deployment's strategy: from a file, or one model with --model."""
    if (file is None) == (model is None):
        raise InvalidInput("give the strategy as --file FILE or --model URI (one of them)")
    spec = (
        read_document(file, "strategy") if file is not None else {"type": "single", "model": model}
    )
    _report(rollout.set_deployment_strategy(workspace(ctx), name, spec, reason=reason), as_json)


@app.command("blue-green")
def blue_green(
    ctx: typer.Context,
    name: Name,
    blue: Annotated[str, typer.Option("--blue", help="The blue model URI.")],
    green: Annotated[str, typer.Option("--green", help="The green model URI.")],
    live: Annotated[
        Literal["blue", "green"], typer.Option("--live", help="Which colour answers.")
    ] = "blue",
    reason: Reason = None,
    as_json: JsonFlag = False,
) -> None:
    """Serve one of two versions; 'switch' flips between them at once."""
    spec = {"type": "blue_green", "blue": blue, "green": green, "live": live}
    _report(rollout.set_deployment_strategy(workspace(ctx), name, spec, reason=reason), as_json)


@app.command("switch")
def switch(
    ctx: typer.Context, name: Name, reason: Reason = None, as_json: JsonFlag = False
) -> None:
    """Blue-green: make the other colour live (run again to switch back)."""
    ws = workspace(ctx)
    state = ws.rollouts.switch(name, actor=ws.user, reason=reason)
    if as_json:
        emit_json(state_document(state))
        return
    strategy = state.strategy
    assert isinstance(strategy, BlueGreen)  # switch refuses every other strategy
    uri = strategy.blue if strategy.live == "blue" else strategy.green
    typer.echo(f"deployment {name}: {strategy.live} ({uri}) is live, revision {state.revision}")


def change_document(change: Change) -> dict[str, Any]:
    return {
        "revision": change.revision,
        "action": change.action,
        "type": change.strategy.get("type"),
        "strategy": change.strategy,
        "weights": None if change.weights is None else list(change.weights),
        "experiment": change.experiment,
        "actor": change.actor,
        "reason": change.reason,
        "at": change.at,
    }


@app.command("history")
def history(
    ctx: typer.Context,
    name: Name,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The deployment's changes, newest first: who, when, why and what."""
    changes = workspace(ctx).rollouts.history(name, limit=limit)
    if as_json:
        emit_json([change_document(c) for c in changes])
        return
    print_table(
        f"history of deployment {name}",
        ["revision", "at", "action", "type", "weights", "experiment", "by", "reason"],
        (
            [
                c.revision,
                c.at,
                c.action,
                c.strategy.get("type"),
                c.weights,
                c.experiment,
                c.actor,
                c.reason,
            ]
            for c in changes
        ),
        empty=f"deployment {name!r} has no changes recorded",
    )
