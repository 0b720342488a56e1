"""Tables of the metadata database (SQLAlchemy Core). Alembic migrations create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores naive UTC, returns timezone-aware UTC datetimes on every backend."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = sa.MetaData()
KEY = sa.String(250)
NAME = sa.String(128)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(250)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", UTCDateTime, nullable=False),
    sa.Column("end_time", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("user", sa.String(128)),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("python_version", sa.String(32), nullable=False),
    sa.Column("packages", sa.JSON, nullable=False),
    sa.Column("seed", sa.BigInteger),
    sa.Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

run_params = sa.Table(
    "run_params",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

run_metrics = sa.Table(
    "run_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("key", KEY, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Index("ix_run_metrics_run_key", "run_id", "key", "step"),
)

run_tags = sa.Table(
    "run_tags",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

run_datasets = sa.Table(
    "run_datasets",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("name", KEY, primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("num_rows", sa.BigInteger, nullable=False),
)

run_artifacts = sa.Table(
    "run_artifacts",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("key", sa.String(2000), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_version", sa.Integer, nullable=False),
)

model_tags = sa.Table(
    "model_tags",
    metadata,
    sa.Column("name", NAME, sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", NAME, sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("flavor_options", sa.JSON, nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("artifact_key", sa.String(2000), nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("artifact_files", sa.JSON, nullable=False),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id")),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128)),
)

version_tags = sa.Table(
    "version_tags",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("alias", NAME, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

alias_events = sa.Table(
    "alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", NAME, sa.ForeignKey("registered_models.name"), nullable=False),
    sa.Column("alias", NAME, nullable=False),
    sa.Column("version", sa.Integer),
    sa.Column("previous_version", sa.Integer),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(128)),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_alias_events_name_alias", "name", "alias", "id"),
)

feature_repos = sa.Table(
    "feature_repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("artifact_key", sa.String(2000), nullable=False),
    sa.Column("artifact_files", sa.JSON, nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128)),
)

feature_definitions = sa.Table(
    "feature_definitions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", NAME, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("breaking", sa.Boolean, nullable=False),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("feature_repos.id")),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128)),
)

feature_watermarks = sa.Table(
    "feature_watermarks",
    metadata,
    sa.Column("view", NAME, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("watermark", UTCDateTime, nullable=False),
    sa.Column("rows_written", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

feature_profiles = sa.Table(
    "feature_profiles",
    metadata,
    sa.Column("view", NAME, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("alerted_at", UTCDateTime, nullable=False),
    sa.Column("checks", sa.Integer, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(500), nullable=False),
    sa.Column("rule", NAME, nullable=False),
    sa.Column("model", NAME, nullable=False),
    sa.Column("subject", sa.String(250), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("actions", sa.JSON, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_alerts_model_at", "model", "at"),
)

model_references = sa.Table(
    "model_references",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("artifact_key", sa.String(2000), nullable=False),
    sa.Column("artifact_files", sa.JSON, nullable=False),
    sa.Column("artifact_digest", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(128)),
    sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
    sa.Index("ix_model_references_version", "name", "version", "id"),
)

# ----------------------------------------------------------------- deployments and experiments
deployment_strategies = sa.Table(
    "deployment_strategies",
    metadata,
    sa.Column("deployment", NAME, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),  # +1 on every change: replicas compare it
    sa.Column("strategy", sa.JSON, nullable=False),
    sa.Column("experiment", NAME),  # the experiment running on it, if any
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("weights", sa.JSON),  # a bandit's current allocation, or a canary's step weight
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

deployment_changes = sa.Table(
    "deployment_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", NAME, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("strategy", sa.JSON, nullable=False),
    sa.Column("weights", sa.JSON),
    sa.Column("experiment", NAME),
    sa.Column("actor", sa.String(128)),
    sa.Column("reason", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_deployment_changes_deployment", "deployment", "id"),
)

rollout_experiments = sa.Table(
    "rollout_experiments",
    metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("deployment", NAME, nullable=False),
    sa.Column("strategy", sa.JSON, nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),  # index into a canary's schedule (-1: none)
    sa.Column("step_started_at", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("ended_at", UTCDateTime),
    sa.Index("ix_rollout_experiments_deployment", "deployment"),
)

rollout_decisions = sa.Table(
    "rollout_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", NAME, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_rollout_decisions_experiment", "experiment", "id"),
)
