"""A child who left the kindergarten it was enrolled in (the queue's
application.left) no longer holds its PIN: it may apply again, with a new
queue date (issue 19).

Revision ID: registration_0006
Revises: registration_0005
"""
import sqlalchemy as sa
from alembic import op

revision = "registration_0006"
down_revision = "registration_0005"
branch_labels = None
depends_on = None

LIVE = sa.text("status NOT IN ('removed', 'refused', 'left')")
OLD = sa.text("status NOT IN ('removed', 'refused')")


def upgrade() -> None:
    op.drop_index("ux_applications_live_child_pin", "applications")
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.execute("UPDATE applications SET status = 'removed' WHERE status = 'left'")
    op.drop_index("ux_applications_live_child_pin", "applications")
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=OLD, sqlite_where=OLD)
