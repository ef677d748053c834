"""What an in-app message says, kept as its kind's parameters, so that the
inbox renders it again in the language the parent reads it in (the text
stored at sending stays for the other channels and as the fallback).

Revision ID: notifications_0006
Revises: notifications_0005
"""
import sqlalchemy as sa
from alembic import op

revision = "notifications_0006"
down_revision = "notifications_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("params", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "params")
