"""Position points for the cabinet's chart of a child's position over time.

Revision ID: gateway_0200_position_points
Revises: gateway_0100_public
"""
import sqlalchemy as sa
from alembic import op

revision = "gateway_0200_position_points"
down_revision = "gateway_0100_public"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "position_points",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("kindergarten_id", sa.String(100), nullable=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_position_points_application", "position_points", ["application_id", "at"])


def downgrade() -> None:
    op.drop_table("position_points")
