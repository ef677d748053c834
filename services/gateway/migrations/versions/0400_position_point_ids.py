"""Position points keyed by ids longer than a UUID: a point the cabinet
showed itself is `seen-<uuid>` (41 characters), which PostgreSQL refused
in varchar(36) (GET /api/v1/me failed right after a queue move).

Revision ID: gateway_0400_position_point_ids
Revises: gateway_0300_voucher_decisions
"""
import sqlalchemy as sa
from alembic import op

revision = "gateway_0400_position_point_ids"
down_revision = "gateway_0300_voucher_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("position_points") as batch:
        batch.alter_column("event_id", type_=sa.String(64), existing_type=sa.String(36), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("position_points") as batch:
        batch.alter_column("event_id", type_=sa.String(36), existing_type=sa.String(64), existing_nullable=False)
