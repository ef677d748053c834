"""What a referral's workflow needs to continue it elsewhere: whether the one
extension was used and when the privilege was confirmed. An imported
referral's workflow starts from them (ReferralInput.resume); the workflow
keeps them up to date for every referral.

Revision ID: queue_0006
Revises: queue_0005
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0006"
down_revision = "queue_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referrals", sa.Column("extended", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("referrals", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("referrals", "confirmed_at")
    op.drop_column("referrals", "extended")
