"""Whether the allocation announced a referral (issue 15): since then the
allocation's own transaction writes each referral's referral.issued fact
and audit row, and the workflow started afterwards (ReferralInput.announced)
does not record it again. Referrals written before (false) were not
announced: their workflows record the fact as they always did.

Revision ID: queue_0014_referral_announced
Revises: queue_0013_request_pools
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0014_referral_announced"
down_revision = "queue_0013_request_pools"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referrals", sa.Column("announced", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("announced")
