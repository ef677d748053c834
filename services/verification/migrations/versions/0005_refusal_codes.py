"""A refused decision keeps the workflow's refusal as a code with its
parameters (workflows/rules.TEXTS), so the case page says it in the
reader's language; the English words stay in `refusal`.

Revision ID: verification_0005_refusals
Revises: verification_0004_audit
"""
import sqlalchemy as sa
from alembic import op

revision = "verification_0005_refusals"
down_revision = "verification_0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("refusal_code", sa.String(60), nullable=True))
        batch.add_column(sa.Column("refusal_params", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("refusal_params")
        batch.drop_column("refusal_code")
