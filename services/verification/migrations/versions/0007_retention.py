"""Retention (kezek/retention.py): verification's retention clock, fed by
application.closed.v1; and the audit trail's one rewrite path on SQLite
(kezek/audit.py): the append-only UPDATE trigger lets an update through
while `audit_rewrite_open` has a row, which `AuditTrail.rewrite` (the
retention job) adds and removes in its own transaction. PostgreSQL has its
gate already (kezek.audit_rewrite).

Revision ID: verification_0007
Revises: verification_0006_kindergarten
"""
from alembic import op

from kezek.retention import create_retention_table, drop_retention_table

revision = "verification_0007"
down_revision = "verification_0006_kindergarten"
branch_labels = None
depends_on = None

REFUSE = "BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only: UPDATE refused'); END"


def upgrade() -> None:
    create_retention_table(op)
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("CREATE TABLE audit_rewrite_open (opened INTEGER NOT NULL)")
    op.execute("DROP TRIGGER IF EXISTS audit_trail_no_update")
    op.execute("CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail "
               f"WHEN NOT EXISTS (SELECT 1 FROM audit_rewrite_open) {REFUSE}")


def downgrade() -> None:
    drop_retention_table(op)
    if op.get_bind().dialect.name == "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_trail_no_update")
    op.execute(f"CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail {REFUSE}")
    op.execute("DROP TABLE audit_rewrite_open")
