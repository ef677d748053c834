"""Kindergarten staff (issue 19): the head or admissions clerk of one
kindergarten works within it; the account names it (and, as every account
with a scope, its district).

Revision ID: verification_0006_kindergarten
Revises: verification_0005_refusals
"""
import sqlalchemy as sa
from alembic import op

revision = "verification_0006_kindergarten"
down_revision = "verification_0005_refusals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.add_column(sa.Column("kindergarten", sa.String(100), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.drop_column("kindergarten")
