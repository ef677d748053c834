"""Registration's retention clock (kezek/retention.py), fed by
application.closed.v1; applications removed or refused before it start
their clock now (the queue's own clock knows when they closed).

Revision ID: registration_0005
Revises: registration_0004
"""
from alembic import op

from kezek.retention import create_retention_table, drop_retention_table

revision = "registration_0005"
down_revision = "registration_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_retention_table(op)
    op.execute("INSERT INTO retention_clock (application_id, parent_id, outcome, closed_at) "
               "SELECT id, account_id, status, CURRENT_TIMESTAMP FROM applications "
               "WHERE status IN ('removed', 'refused')")


def downgrade() -> None:
    drop_retention_table(op)
