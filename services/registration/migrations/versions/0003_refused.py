"""An application the queue refused no longer holds its child's PIN.

Revision ID: registration_0003
Revises: registration_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "registration_0003"
down_revision = "registration_0002"
branch_labels = None
depends_on = None

LIVE = sa.text("status NOT IN ('removed', 'refused')")
OLD = sa.text("status <> 'removed'")


def upgrade() -> None:
    op.drop_index("ux_applications_live_child_pin", "applications")
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_index("ux_applications_live_child_pin", "applications")
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=OLD, sqlite_where=OLD)
