"""The gateway's retention clock (kezek/retention.py), fed by
application.closed.v1.

Revision ID: gateway_0600_retention
Revises: gateway_0500_boundary
"""
from alembic import op

from kezek.retention import create_retention_table, drop_retention_table

revision = "gateway_0600_retention"
down_revision = "gateway_0500_boundary"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_retention_table(op)


def downgrade() -> None:
    drop_retention_table(op)
