"""The voucher commission's decisions, for the cabinet.

Revision ID: gateway_0300_voucher_decisions
Revises: gateway_0200_position_points
"""
import sqlalchemy as sa
from alembic import op

revision = "gateway_0300_voucher_decisions"
down_revision = "gateway_0200_position_points"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "voucher_decisions",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("decision_number", sa.Integer, nullable=False),
        sa.Column("benefit_type", sa.String(30), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voucher_decisions")
