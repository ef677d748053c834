"""The notifications service's retention clock (kezek/retention.py), fed
by application.closed.v1.

Revision ID: notifications_0005
Revises: notifications_0004
"""
from alembic import op

from kezek.retention import create_retention_table, drop_retention_table

revision = "notifications_0005"
down_revision = "notifications_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_retention_table(op)


def downgrade() -> None:
    drop_retention_table(op)
