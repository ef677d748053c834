"""Allocation requests name the pools they concern (issue 15): the run
after one freed place reads that pool's group of places, not every pool
that still has places nobody wants. Requests written before (NULL) ask for
every pool, as they always did.

Revision ID: queue_0013_request_pools
Revises: queue_0012_sealed
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0013_request_pools"
down_revision = "queue_0012_sealed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("allocation_requests", sa.Column("pools", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("allocation_requests") as batch:
        batch.drop_column("pools")
