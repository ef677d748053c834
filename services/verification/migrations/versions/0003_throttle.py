"""Sign-in throttling instead of the lock: wrong passwords counted per key
(account and client, or client), and the notice a session shows its owner
(the wrong passwords since their last sign-in).

Revision ID: verification_0003_throttle
Revises: verification_0002_cases
"""
import sqlalchemy as sa
from alembic import op

revision = "verification_0003_throttle"
down_revision = "verification_0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sign_in_failures_last_at", "sign_in_failures", ["last_at"])
    with op.batch_alter_table("staff_sessions") as batch:
        batch.add_column(sa.Column("notice", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("staff_sessions") as batch:
        batch.drop_column("notice")
    op.drop_index("ix_sign_in_failures_last_at", "sign_in_failures")
    op.drop_table("sign_in_failures")
