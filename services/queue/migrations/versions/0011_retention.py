"""The queue's retention clock (kezek/retention.py): when each application
closed and how, so its daily job anonymises the entry when the policy's
period for that outcome ends. Entries closed before this migration start
their clock at the moment they closed (removed_at, left_at) or now.

Revision ID: queue_0011_retention
Revises: queue_0010_aged_out
"""
from alembic import op

from kezek.retention import create_retention_table, drop_retention_table

revision = "queue_0011_retention"
down_revision = "queue_0010_aged_out"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_retention_table(op)
    op.execute("INSERT INTO retention_clock (application_id, parent_id, outcome, closed_at) "
               "SELECT id, parent_id, status, COALESCE(removed_at, left_at, updated_at) FROM applications "
               "WHERE status IN ('removed', 'left', 'aged_out')")
    op.execute("INSERT INTO retention_clock (application_id, parent_id, outcome, closed_at) "
               "SELECT a.id, a.parent_id, 'enrolled', COALESCE(r.ended_at, a.updated_at) FROM applications a "
               "JOIN referrals r ON r.application_id = a.id AND r.status = 'enrolled' WHERE a.status = 'enrolled'")


def downgrade() -> None:
    drop_retention_table(op)
