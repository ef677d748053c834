"""The queue's audit log moves to the one audit model of every service
(kezek/audit.py: audit_trail, append-only on PostgreSQL): every row kept,
with its id, moment, actor, action, subject and details; the actor's role is
read from the actor's prefix (parent:, a staff role, else the service).

Revision ID: queue_0008_audit_trail
Revises: queue_0007_positions
"""
import sqlalchemy as sa
from alembic import op

from kezek.audit import create_audit_table, drop_audit_table
from kezek.trust import STAFF_ROLES

revision = "queue_0008_audit_trail"
down_revision = "queue_0007_positions"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_ROLE = ("CASE " + " ".join(f"WHEN actor LIKE '{role}:%' THEN '{role}'" for role in ("parent", *STAFF_ROLES))
         + " ELSE 'service' END")


def upgrade() -> None:
    create_audit_table(op)
    op.execute("INSERT INTO audit_trail (id, at, kind, actor, actor_role, action, subject, outcome, details) "
               f"SELECT id, at, 'act', actor, {_ROLE}, action, subject, 'ok', details FROM audit_log ORDER BY id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('audit_trail', 'id'), "
                   "COALESCE((SELECT max(id) FROM audit_trail), 0) + 1, false)")
    op.drop_index("ix_audit_subject", "audit_log")
    op.drop_table("audit_log")


def downgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_subject", "audit_log", ["subject", "id"])
    op.execute("INSERT INTO audit_log (id, at, actor, action, subject, details) "
               "SELECT id, at, substr(actor, 1, 100), substr(action, 1, 60), subject, details FROM audit_trail "
               "WHERE kind = 'act' ORDER BY id")
    drop_audit_table(op)
