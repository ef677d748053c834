"""The cabinet's read model: a counter per family and application, bumped
by the events (services/gateway/readmodel.py).

Revision ID: gateway_0700_cabinet_stamps
Revises: gateway_0600_retention
"""
import sqlalchemy as sa
from alembic import op

revision = "gateway_0700_cabinet_stamps"
down_revision = "gateway_0600_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cabinet_stamps",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cabinet_stamps")
