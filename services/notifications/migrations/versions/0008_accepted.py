"""When the provider accepted a message, written the moment it answered and
before the rest of the record (`Dispatching.note_accepted`): a dispatcher
that dies in between leaves a message whose send is known, which is then
recorded, not sent again.

Revision ID: notifications_0008
Revises: notifications_0007_sealed
"""
import sqlalchemy as sa
from alembic import op

revision = "notifications_0008"
down_revision = "notifications_0007_sealed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "accepted_at")
