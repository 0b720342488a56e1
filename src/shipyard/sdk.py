"""The Python SDK's module-level functions, acting on the workspace the environment describes.

``shipyard.start_run(...)`` and friends use one default :class:`Workspace` built from
``SHIPYARD_*`` settings on first use; create a :class:`Workspace` yourself to work with several.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shipyard.flavors.base import LoadedModel
from shipyard.records import AliasEvent, Lineage, ModelVersion
from shipyard.settings import Settings
from shipyard.tracking import ActiveRun
from shipyard.tracking import seed_everything as _seed_everything
from shipyard.workspace import Workspace

if TYPE_CHECKING:
    from shipyard.experiments.analysis import ExperimentAnalysis
    from shipyard.experiments.spec import ABTest, Bandit, Canary, Shadow
    from shipyard.experiments.store import AnyStrategy, DeploymentState, Experiment

_default: Workspace | None = None
_default_lock = threading.Lock()


def workspace() -> Workspace:
    """The default workspace (from ``SHIPYARD_*`` environment variables), opened once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Workspace(Settings())
        return _default


def use_workspace(ws: Workspace | None) -> None:
    """Make ``ws`` the default workspace (None: rebuild from the environment on next use)."""
    global _default
    with _default_lock:
        _default = ws


def seed_everything(seed: int) -> int:
    """Seed ``random``, NumPy and torch (when imported); runs record the seed."""
    return _seed_everything(seed)


def start_run(
    experiment: str, *, name: str | None = None, tags: Mapping[str, str] | None = None
) -> ActiveRun:
    """Start a tracked run; use it as a context manager so that a failure is recorded."""
    return workspace().start_run(experiment, name=name, tags=tags)


def register_model(
    name: str,
    model: Any,
    *,
    input_example: Any,
    run: ActiveRun | str | None = None,
    flavor: str | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Register ``model`` as the next version of ``name``; returns the new version."""
    return workspace().register_model(
        name,
        model,
        input_example=input_example,
        run=run,
        flavor=flavor,
        description=description,
        tags=tags,
    )


def load_model(uri: str) -> LoadedModel:
    """Load ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` (verified, cached per version)."""
    return workspace().load_model(uri)


def set_alias(name: str, alias: str, version: int, *, reason: str | None = None) -> AliasEvent:
    return workspace().registry.set_alias(name, alias, version, reason=reason)


def rollback(name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
    """Move ``alias`` back to the version it pointed at before."""
    return workspace().registry.rollback(name, alias, reason=reason)


def alias_history(name: str, alias: str | None = None) -> list[AliasEvent]:
    return workspace().registry.alias_history(name, alias)


def alias_version_at(name: str, alias: str, at: datetime) -> int | None:
    """Which version ``alias`` pointed at, at time ``at``."""
    return workspace().registry.alias_version_at(name, alias, at)


def get_model_version(uri: str) -> ModelVersion:
    return workspace().registry.resolve(uri)


def lineage(uri: str) -> Lineage:
    return workspace().lineage(uri)


def set_deployment_strategy(
    deployment: str,
    strategy: AnyStrategy | Mapping[str, Any],
    *,
    reason: str | None = None,
) -> DeploymentState:
    """Replace what ``deployment`` serves: a strategy mapping with ``type`` (single, blue_green,
    canary, shadow, ab_test, bandit) or a spec; audit-logged, refused while an experiment runs."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.set_deployment_strategy(workspace(), deployment, strategy, reason=reason)


def create_experiment(
    name: str,
    deployment: str,
    strategy: Canary | Shadow | ABTest | Bandit | Mapping[str, Any],
) -> Experiment:
    """Record an experiment (canary, shadow, ab_test or bandit) on ``deployment``; not started."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.create_experiment(workspace(), name, deployment, strategy)


def start_experiment(name: str) -> DeploymentState:
    """Put the experiment's strategy on its deployment (a canary at its first step)."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.start_experiment(workspace(), name)


def stop_experiment(
    name: str,
    *,
    promote: bool = False,
    rollback: bool = False,
    variant: str | None = None,
    reason: str | None = None,
) -> DeploymentState:
    """End a running experiment: the control serves alone, or with ``promote`` the candidate
    (``variant`` picks one when there are several; a canary's promote alias moves to it)."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.stop_experiment(
        workspace(), name, promote=promote, rollback=rollback, variant=variant, reason=reason
    )


def analyze_experiment(
    name: str,
    *,
    end: datetime | None = None,
    sequential: bool = False,
    alpha: float = 0.05,
) -> ExperimentAnalysis:
    """Each metric per variant: n, mean, lift with its interval, p-value or chance to win, and
    the sample-ratio check (``.rows()``, ``.to_dict()``)."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.analyze_experiment(
        workspace(), name, end=end, sequential=sequential, alpha=alpha
    )


def log_outcome(
    deployment: str,
    *,
    value: float,
    request_id: str | None = None,
    unit_key: str | None = None,
    metric: str | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Record an outcome of a served prediction (by ``request_id`` or ``unit_key``): a label, a
    reward, or the value of the outcome ``metric``; a repeated ``idempotency_key`` counts once."""
    from shipyard import rollout  # on first use: its statistics import scipy

    return rollout.log_outcome(
        workspace(),
        deployment,
        value=value,
        request_id=request_id,
        unit_key=unit_key,
        metric=metric,
        idempotency_key=idempotency_key,
    )
