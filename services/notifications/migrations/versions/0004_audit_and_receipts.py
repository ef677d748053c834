"""The one audit model (kezek/audit.py) and the signatures of delivery
receipts already taken (replays are refused).

Revision ID: notifications_0004
Revises: notifications_0003
"""
import sqlalchemy as sa
from alembic import op

from kezek.audit import create_audit_table, drop_audit_table

revision = "notifications_0004"
down_revision = "notifications_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_table(op)
    op.create_table(
        "receipt_signatures",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_receipt_signatures_signed_at", "receipt_signatures", ["signed_at"])


def downgrade() -> None:
    op.drop_index("ix_receipt_signatures_signed_at", "receipt_signatures")
    op.drop_table("receipt_signatures")
    drop_audit_table(op)
