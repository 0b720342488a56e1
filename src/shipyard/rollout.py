"""Deployment strategies and experiments on a workspace: set a deployment's strategy, create,
start and stop experiments (moving the promote alias), analyse them and record outcomes.

This is the glue the CLI (``shipyard deployments``, ``shipyard experiments``) and the Python API
share; the storing is in :mod:`shipyard.experiments.store`, the statistics in
:mod:`shipyard.experiments.analysis`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from shipyard.core.identifiers import validate_name
from shipyard.errors import Conflict, InvalidInput
from shipyard.experiments.analysis import ExperimentAnalysis, analyze
from shipyard.experiments.controller import Outcome, tick
from shipyard.experiments.spec import ABTest, Bandit, Canary, Shadow, parse_strategy, variants_of
from shipyard.experiments.store import AnyStrategy, DeploymentState, Experiment
from shipyard.monitor import log_outcomes
from shipyard.workspace import Workspace

logger = logging.getLogger(__name__)

ExperimentStrategy = Canary | Shadow | ABTest | Bandit


def set_deployment_strategy(
    ws: Workspace,
    deployment: str,
    strategy: AnyStrategy | Mapping[str, Any],
    *,
    reason: str | None = None,
) -> DeploymentState:
    """Replace what ``deployment`` serves (audit-logged). Refused (Conflict) while an experiment
    runs on it: stop the experiment first, so that its record and the deployment agree."""
    spec = parse_strategy(dict(strategy)) if isinstance(strategy, Mapping) else strategy
    state = ws.rollouts.set_strategy(deployment, spec, actor=ws.user, reason=reason)
    logger.info("deployment %s: strategy %s (revision %d)", deployment, spec.type, state.revision)
    return state


def create_experiment(
    ws: Workspace,
    name: str,
    deployment: str,
    strategy: ExperimentStrategy | Mapping[str, Any],
) -> Experiment:
    """Record an experiment of type canary, shadow, ab_test or bandit (not running yet)."""
    return ws.rollouts.create(
        name, deployment, dict(strategy) if isinstance(strategy, Mapping) else strategy
    )


def start_experiment(ws: Workspace, name: str) -> DeploymentState:
    """Put the experiment's strategy on its deployment (a canary at its first step)."""
    state = ws.rollouts.start(name, actor=ws.user)
    logger.info("experiment %s started on %s", name, state.deployment)
    return state


def stop_experiment(
    ws: Workspace,
    name: str,
    *,
    promote: bool = False,
    rollback: bool = False,
    variant: str | None = None,
    reason: str | None = None,
) -> DeploymentState:
    """End a running experiment; its deployment then serves one model alone.

    Without flags (status ``stopped``) and with ``rollback`` (``rolled_back``) the control
    serves (its URI as configured): a canary's baseline, a shadow's primary, the first variant of
    an A/B test or bandit. With ``promote`` (``promoted``) the candidate's version serves, pinned
    (``models:/churn/3``, as the controller promotes): a canary's candidate, a shadow's only
    candidate, the other variant of a two-variant A/B test or bandit — or the variant named by
    ``variant`` (``shadow-2`` for a shadow's second candidate); a promoted canary with a
    ``promote_alias`` moves that alias to the version. The stop is recorded as a decision of the
    experiment.
    """
    if promote and rollback:
        raise InvalidInput("choose promote or rollback, not both", field="promote")
    if variant is not None and not promote:
        raise InvalidInput("a variant is chosen only when promoting", field="variant")
    experiment = ws.rollouts.experiment(name)
    strategy = experiment.strategy
    status: Literal["stopped", "promoted", "rolled_back"]
    status = "promoted" if promote else "rolled_back" if rollback else "stopped"
    why = reason or f"experiment {name} {status.replace('_', ' ')} by {ws.user or 'hand'}"
    target = ws.registry.resolve(_promoted(strategy, variant)) if promote else None
    details: dict[str, Any] = {"actor": ws.user, "reason": why}
    if target is None:
        serve = variants_of(strategy)[0].model
    else:  # resolved before any change: an unknown model changes nothing
        serve = f"models:/{target.name}/{target.version}"
        details["promoted_version"] = target.version
    details["serve"] = serve
    state = ws.rollouts.finish(name, status, serve, actor=ws.user, reason=why)
    alias = strategy.promote_alias if isinstance(strategy, Canary) else None
    if target is not None and alias is not None:
        ws.registry.set_alias(target.name, alias, target.version, reason=why)
        details["alias_moved"] = {"alias": alias, "version": target.version}
    ws.rollouts.record(name, experiment.step, status, details)
    logger.info("experiment %s %s: %s serves %s", name, status, experiment.deployment, serve)
    return state


def step_experiment(ws: Workspace, name: str, *, now: datetime | None = None) -> Outcome | None:
    """One look of the rollout controller at a running canary or bandit, as every server does
    on its refresh interval: step, promote or roll back a canary; re-split a bandit. None when
    nothing changed (the step's minimum is not met yet, or the split is not due)."""
    experiment = ws.rollouts.experiment(name)
    state = ws.rollouts.state(experiment.deployment)
    if experiment.status != "running" or state is None or state.experiment != name:
        raise Conflict(f"experiment {name!r} is {experiment.status}, not running")

    def move_alias(model: str, alias: str, version: int, reason: str) -> None:
        ws.registry.set_alias(model, alias, version, reason=reason)

    return tick(
        ws.rollouts,
        ws.events,
        experiment,
        state,
        now=now or datetime.now(UTC),
        resolve_version=ws.registry.resolve_number,
        move_alias=move_alias,
        actor=ws.user,
    )


def _promoted(strategy: ExperimentStrategy, variant: str | None) -> str:
    others = variants_of(strategy)[1:]
    if variant is None:
        if len(others) == 1:
            return others[0].model
        names = ", ".join(v.name for v in others)
        raise InvalidInput(
            f"the experiment has {len(others)} candidates; name the one to promote: {names}",
            field="variant",
        )
    for candidate in others:
        if candidate.name == variant:
            return candidate.model
    names = ", ".join(v.name for v in others)
    raise InvalidInput(
        f"variant {variant!r} is not a candidate of this experiment; choose one of: {names}",
        field="variant",
    )


def analyze_experiment(
    ws: Workspace,
    name: str,
    *,
    end: datetime | None = None,
    sequential: bool = False,
    alpha: float = 0.05,
) -> ExperimentAnalysis:
    """Analyse the experiment's exposures and outcomes up to ``end`` (default: now, or when it
    ended); a running canary's sample-ratio check uses the weights it serves now."""
    experiment = ws.rollouts.experiment(name)
    weights = None
    if experiment.status == "running" and isinstance(experiment.strategy, Canary):
        state = ws.rollouts.state(experiment.deployment)
        if state is not None and state.experiment == name:
            weights = state.weights
    return analyze(
        ws.events, experiment, end=end, weights=weights, sequential=sequential, alpha=alpha
    )


def log_outcome(
    ws: Workspace,
    deployment: str,
    *,
    value: float,
    request_id: str | None = None,
    unit_key: str | None = None,
    metric: str | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Record one outcome of ``deployment``'s predictions, as ``POST /v1/feedback`` does: by
    ``request_id`` or ``unit_key`` (one is required), ``metric`` naming it (None: the model's
    target); a repeated ``idempotency_key`` counts once. Returns how many were stored (1)."""
    validate_name(deployment, what="deployment name")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(
            f"an outcome's value must be a finite number, got {value!r}", field="value"
        )
    if request_id is None and unit_key is None:
        raise InvalidInput("an outcome needs a request_id or a unit_key", field="request_id")
    record = {
        "request_id": request_id,
        "unit_key": unit_key,
        "label": float(value),
        "metric": metric,
        "idempotency_key": idempotency_key,
    }
    return log_outcomes(ws, deployment, [record])
