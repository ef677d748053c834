"""Applications moved from the old portal are known as such: their first
position is the one they already had, not news.

Revision ID: notifications_0003
Revises: notifications_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "notifications_0003"
down_revision = "notifications_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("imported", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("imported")
