"""The transactional outbox and the processed-events table.

Revision ID: gateway_0001
Revises:
"""
from alembic import op

from kezek.outbox import create_outbox_tables, drop_outbox_tables

revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_tables(op)


def downgrade() -> None:
    drop_outbox_tables(op)
