"""The last published position of each child, and the pools whose positions
await publication (application.position_changed.v1).

Revision ID: queue_0007_positions
Revises: queue_0006
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0007_positions"
down_revision = "queue_0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "queue_positions",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("kindergarten_id", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page, so a changed position is a HOT update (no index
        # entry rewritten): a national run moves most children up.
        op.execute("ALTER TABLE queue_positions SET (fillfactor = 70)")
    op.create_table(
        "position_changes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.Integer, nullable=True),
        sa.Column("kindergarten_id", sa.String(100), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("position_changes")
    op.drop_table("queue_positions")
