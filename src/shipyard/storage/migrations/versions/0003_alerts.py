"""monitoring: alert incidents (de-duplication, cooldown), alerts sent, reference data set later

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from shipyard.storage.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_incidents",
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("alerted_at", UTCDateTime(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_model_at", "alerts", ["model", "at"])
    op.create_table(
        "model_references",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_key", sa.String(length=2000), nullable=False),
        sa.Column("artifact_files", sa.JSON(), nullable=False),
        sa.Column("artifact_digest", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["name", "version"], ["model_versions.name", "model_versions.version"]
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_references_version", "model_references", ["name", "version", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_references_version", table_name="model_references")
    op.drop_table("model_references")
    op.drop_index("ix_alerts_model_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_incidents")
