"""Referrals moved from a previous system keep their id there
(`external_id`), so importing them twice creates them once.

Revision ID: queue_0005
Revises: queue_0004
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0005"
down_revision = "queue_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referrals", sa.Column("external_id", sa.String(100), nullable=True))
    op.create_index("uq_referrals_external_id", "referrals", ["external_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_referrals_external_id", "referrals")
    op.drop_column("referrals", "external_id")
