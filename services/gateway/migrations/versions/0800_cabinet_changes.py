"""The cabinet's read model keeps a row per change an event tells of a family
or an application, only ever inserted (services/gateway/readmodel.py): the
counters of 0700, updated in place, made two consumers deadlock on a flood
of events.

Revision ID: gateway_0800_cabinet_changes
Revises: gateway_0700_cabinet_stamps
"""
import sqlalchemy as sa
from alembic import op

revision = "gateway_0800_cabinet_changes"
down_revision = "gateway_0700_cabinet_stamps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("cabinet_stamps")
    op.create_table(
        "cabinet_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cabinet_changes_key_seq", "cabinet_changes", ["key", "seq"])
    op.create_index("ix_cabinet_changes_at", "cabinet_changes", ["at"])


def downgrade() -> None:
    op.drop_table("cabinet_changes")
    op.create_table(
        "cabinet_stamps",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
