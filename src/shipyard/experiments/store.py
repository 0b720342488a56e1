"""Deployment strategies and experiments in the metadata DB.

Every change of a deployment's strategy bumps its ``revision`` and appends a row to
``deployment_changes`` (who, why, what) in the same transaction. Changes made by a controller
(canary steps, bandit allocations) pass the revision they read as ``expected_revision``: when
another replica changed the deployment meanwhile, the write is refused (:class:`Conflict`) and
nothing is recorded, so many replicas may run the same controller and exactly one step lands.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard.core.identifiers import validate_name
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.experiments.spec import (
    ABTest,
    Bandit,
    BlueGreen,
    Canary,
    Shadow,
    Single,
    parse_strategy,
)
from shipyard.storage import schema
from shipyard.storage.database import Database

AnyStrategy = Single | BlueGreen | Canary | Shadow | ABTest | Bandit
Status = Literal["created", "running", "stopped", "promoted", "rolled_back"]
EXPERIMENT_TYPES = (Canary, Shadow, ABTest, Bandit)


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """What a deployment serves now. ``weights``: a canary's current candidate weight as
    ``[baseline, candidate]``, or a bandit's allocation (None: the strategy's own split)."""

    deployment: str
    revision: int
    strategy: AnyStrategy
    experiment: str | None
    salt: str
    weights: tuple[float, ...] | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """One audit-log entry of a deployment."""

    deployment: str
    revision: int
    action: str
    strategy: dict[str, Any]
    weights: tuple[float, ...] | None
    experiment: str | None
    actor: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    deployment: str
    strategy: Canary | Shadow | ABTest | Bandit
    salt: str
    status: Status
    step: int
    step_started_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    """A controller's decision, with every number it used."""

    experiment: str
    step: int
    action: str
    details: dict[str, Any]
    at: datetime


class Rollouts:
    """Deployment strategies, their audit log, experiments and decisions."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # ----------------------------------------------------------------- deployments
    def state(self, deployment: str) -> DeploymentState | None:
        """The deployment's strategy (None: none set; it serves its configured model)."""
        return self.states([deployment]).get(deployment)

    def states(self, deployments: Iterable[str]) -> dict[str, DeploymentState]:
        """The strategies set for ``deployments`` (one query: the servers' watcher calls it)."""
        table = schema.deployment_strategies
        with self.database.read() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.deployment.in_(list(deployments)))
            ).all()
        return {row.deployment: _state(row) for row in rows}

    def set_strategy(
        self,
        deployment: str,
        strategy: AnyStrategy | dict[str, Any],
        *,
        action: str = "set",
        experiment: str | None = None,
        salt: str | None = None,
        weights: Sequence[float] | None = None,
        expected_revision: int | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> DeploymentState:
        """Replace the deployment's strategy (audit-logged). Refused (Conflict) while an
        experiment runs on it, so that the experiment's record and the deployment agree.
        ``expected_revision``: refuse unless the stored revision is still that one (0: none)."""
        validate_name(deployment, what="deployment name")
        spec = parse_strategy(strategy) if isinstance(strategy, dict) else strategy
        with self.database.write() as conn:
            running = conn.execute(
                sa.select(schema.deployment_strategies.c.experiment).where(
                    schema.deployment_strategies.c.deployment == deployment
                )
            ).scalar()
            if running is not None and experiment is None:
                raise Conflict(
                    f"deployment {deployment!r} runs experiment {running!r}; stop it first "
                    f"(shipyard experiments stop {running})"
                )
            return _write_state(
                conn,
                deployment,
                spec,
                action=action,
                experiment=experiment,
                salt=salt,
                weights=weights,
                expected_revision=expected_revision,
                actor=actor,
                reason=reason,
            )

    def set_weights(
        self,
        deployment: str,
        weights: Sequence[float],
        *,
        expected_revision: int,
        action: str = "allocate",
        actor: str | None = None,
        reason: str | None = None,
    ) -> DeploymentState:
        """Change only the split (a canary step, a bandit's allocation), compare-and-set."""
        current = self.state(deployment)
        if current is None:
            raise NotFound(f"deployment {deployment!r} has no strategy set")
        with self.database.write() as conn:
            return _write_state(
                conn,
                deployment,
                current.strategy,
                action=action,
                experiment=current.experiment,
                salt=current.salt,
                weights=weights,
                expected_revision=expected_revision,
                actor=actor,
                reason=reason,
            )

    def switch(
        self, deployment: str, *, actor: str | None = None, reason: str | None = None
    ) -> DeploymentState:
        """Blue-green: make the other colour live (one atomic change; again to switch back)."""
        current = self.state(deployment)
        if current is None or not isinstance(current.strategy, BlueGreen):
            raise InvalidInput(
                f"deployment {deployment!r} has no blue_green strategy to switch",
                field="deployment",
            )
        live = "green" if current.strategy.live == "blue" else "blue"
        flipped = current.strategy.model_copy(update={"live": live})
        return self.set_strategy(
            deployment,
            flipped,
            action=f"switch-{live}",
            salt=current.salt,
            expected_revision=current.revision,
            actor=actor,
            reason=reason,
        )

    def history(self, deployment: str, *, limit: int = 100) -> list[Change]:
        """The deployment's changes, newest first."""
        table = schema.deployment_changes
        with self.database.read() as conn:
            rows = conn.execute(
                sa.select(table)
                .where(table.c.deployment == deployment)
                .order_by(table.c.id.desc())
                .limit(limit)
            ).all()
        return [
            Change(
                r.deployment,
                r.revision,
                r.action,
                r.strategy,
                None if r.weights is None else tuple(r.weights),
                r.experiment,
                r.actor,
                r.reason,
                r.at,
            )
            for r in rows
        ]

    # ----------------------------------------------------------------- experiments
    def create(
        self,
        name: str,
        deployment: str,
        strategy: Canary | Shadow | ABTest | Bandit | dict[str, Any],
    ) -> Experiment:
        """Record an experiment (not running yet); its salt is drawn now and kept for life."""
        validate_name(name, what="experiment name")
        validate_name(deployment, what="deployment name")
        spec = parse_strategy(strategy) if isinstance(strategy, dict) else strategy
        if not isinstance(spec, EXPERIMENT_TYPES):
            raise InvalidInput(
                f"an experiment's strategy is canary, shadow, ab_test or bandit; got {spec.type}",
                field="type",
            )
        now = _now()
        table = schema.rollout_experiments
        with self.database.write() as conn:
            if conn.execute(sa.select(table.c.name).where(table.c.name == name)).first():
                raise Conflict(f"experiment {name!r} exists already; pick another name")
            conn.execute(
                table.insert().values(
                    name=name,
                    deployment=deployment,
                    strategy=spec.model_dump(mode="json"),
                    salt=f"{name}-{secrets.token_hex(8)}",
                    status="created",
                    step=-1,
                    created_at=now,
                )
            )
        return self.experiment(name)

    def experiment(self, name: str) -> Experiment:
        table = schema.rollout_experiments
        with self.database.read() as conn:
            row = conn.execute(sa.select(table).where(table.c.name == name)).first()
        if row is None:
            raise NotFound(f"no experiment named {name!r}")
        return _experiment(row)

    def experiments(self, deployment: str | None = None) -> list[Experiment]:
        table = schema.rollout_experiments
        query = sa.select(table).order_by(table.c.created_at.desc())
        if deployment is not None:
            query = query.where(table.c.deployment == deployment)
        with self.database.read() as conn:
            return [_experiment(r) for r in conn.execute(query).all()]

    def start(
        self, name: str, *, actor: str | None = None, now: datetime | None = None
    ) -> DeploymentState:
        """Put the experiment's strategy on its deployment (a canary at its first step)."""
        experiment = self.experiment(name)
        if experiment.status != "created":
            raise Conflict(f"experiment {name!r} is {experiment.status}; only a new one starts")
        now = now or _now()
        strategy = experiment.strategy
        step, weights = -1, None
        if isinstance(strategy, Canary):
            if strategy.schedule:
                step = 0
                first = strategy.schedule[0].weight
                weights = (1.0 - first, first)
            else:
                weights = (1.0 - strategy.weight, strategy.weight)
        with self.database.write() as conn:
            running = conn.execute(
                sa.select(schema.rollout_experiments.c.name).where(
                    schema.rollout_experiments.c.deployment == experiment.deployment,
                    schema.rollout_experiments.c.status == "running",
                )
            ).first()
            if running is not None:
                raise Conflict(
                    f"deployment {experiment.deployment!r} already runs experiment "
                    f"{running.name!r}; stop it first"
                )
            _update_experiment(
                conn, name, status="running", step=step, step_started_at=now, started_at=now
            )
            return _write_state(
                conn,
                experiment.deployment,
                strategy,
                action="start",
                experiment=name,
                salt=experiment.salt,
                weights=weights,
                expected_revision=None,
                actor=actor,
                reason=f"experiment {name} started",
            )

    def advance(
        self,
        name: str,
        step: int,
        weights: Sequence[float],
        *,
        expected_revision: int,
        now: datetime,
        actor: str | None = None,
        reason: str | None = None,
    ) -> DeploymentState:
        """Move a running canary to ``step`` with ``weights`` (compare-and-set)."""
        experiment = self._running(name)
        with self.database.write() as conn:
            _update_experiment(conn, name, step=step, step_started_at=now)
            return _write_state(
                conn,
                experiment.deployment,
                experiment.strategy,
                action="step",
                experiment=name,
                salt=experiment.salt,
                weights=weights,
                expected_revision=expected_revision,
                actor=actor,
                reason=reason,
            )

    def finish(
        self,
        name: str,
        status: Literal["stopped", "promoted", "rolled_back"],
        serve: str,
        *,
        expected_revision: int | None = None,
        now: datetime | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> DeploymentState:
        """End the experiment: the deployment serves ``serve`` (a model URI) alone."""
        experiment = self._running(name)
        now = now or _now()
        with self.database.write() as conn:
            _update_experiment(conn, name, status=status, ended_at=now)
            return _write_state(
                conn,
                experiment.deployment,
                Single(model=serve),
                action=status,
                experiment=None,
                salt=experiment.salt,
                weights=None,
                expected_revision=expected_revision,
                actor=actor,
                reason=reason,
            )

    def record(self, name: str, step: int, action: str, details: dict[str, Any]) -> Decision:
        """Append a controller decision (``details``: JSON-able numbers)."""
        at = _now()
        with self.database.write() as conn:
            conn.execute(
                schema.rollout_decisions.insert().values(
                    experiment=name, step=step, action=action, details=details, at=at
                )
            )
        return Decision(name, step, action, details, at)

    def decisions(self, name: str) -> list[Decision]:
        table = schema.rollout_decisions
        with self.database.read() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.experiment == name).order_by(table.c.id)
            ).all()
        return [Decision(r.experiment, r.step, r.action, r.details, r.at) for r in rows]

    def _running(self, name: str) -> Experiment:
        experiment = self.experiment(name)
        if experiment.status != "running":
            raise Conflict(f"experiment {name!r} is {experiment.status}, not running")
        return experiment


# ------------------------------------------------------------------------ rows
def _now() -> datetime:
    return datetime.now(UTC)


def _write_state(
    conn: Connection,
    deployment: str,
    strategy: AnyStrategy,
    *,
    action: str,
    experiment: str | None,
    salt: str | None,
    weights: Sequence[float] | None,
    expected_revision: int | None,
    actor: str | None,
    reason: str | None,
) -> DeploymentState:
    table = schema.deployment_strategies
    row = conn.execute(
        sa.select(table.c.revision, table.c.salt)
        .where(table.c.deployment == deployment)
        .with_for_update()
    ).first()
    revision = 0 if row is None else int(row.revision)
    if expected_revision is not None and expected_revision != revision:
        raise Conflict(
            f"deployment {deployment!r} changed meanwhile (revision {revision}, "
            f"expected {expected_revision})"
        )
    now = _now()
    salt = salt or (row.salt if row is not None else f"{deployment}-{secrets.token_hex(8)}")
    split = None if weights is None else tuple(float(w) for w in weights)
    values: dict[str, Any] = {
        "revision": revision + 1,
        "strategy": strategy.model_dump(mode="json"),
        "experiment": experiment,
        "salt": salt,
        "weights": None if split is None else list(split),
        "updated_at": now,
    }
    if row is None:
        conn.execute(table.insert().values(deployment=deployment, **values))
    else:
        conn.execute(table.update().where(table.c.deployment == deployment).values(**values))
    conn.execute(
        schema.deployment_changes.insert().values(
            deployment=deployment,
            revision=values["revision"],
            action=action,
            strategy=values["strategy"],
            weights=values["weights"],
            experiment=experiment,
            actor=actor,
            reason=reason,
            at=now,
        )
    )
    return DeploymentState(deployment, revision + 1, strategy, experiment, salt, split, now)


def _update_experiment(conn: Connection, name: str, **values: Any) -> None:
    table = schema.rollout_experiments
    conn.execute(table.update().where(table.c.name == name).values(**values))


def _state(row: Any) -> DeploymentState:
    return DeploymentState(
        row.deployment,
        int(row.revision),
        parse_strategy(row.strategy),
        row.experiment,
        row.salt,
        None if row.weights is None else tuple(float(w) for w in row.weights),
        row.updated_at,
    )


def _experiment(row: Any) -> Experiment:
    strategy = parse_strategy(row.strategy)
    assert isinstance(strategy, EXPERIMENT_TYPES)
    return Experiment(
        row.name,
        row.deployment,
        strategy,
        row.salt,
        row.status,
        int(row.step),
        row.step_started_at,
        row.created_at,
        row.started_at,
        row.ended_at,
    )
