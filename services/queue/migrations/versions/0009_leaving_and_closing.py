"""Kindergartens and district offices (issue 19): an enrolled child who leaves
closes the application (status `left`, `left_at`; the PIN is free again, as
after a removal), a kindergarten can be closed (`closed_at`), and a scheduled
publication can be cancelled before its moment (`cancelled_at`, by whom).

Revision ID: queue_0009_leaving_and_closing
Revises: queue_0008_audit_trail
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0009_leaving_and_closing"
down_revision = "queue_0008_audit_trail"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('queued','referred','enrolled','paused','removed')"
NEW_STATUSES = "status IN ('queued','referred','enrolled','paused','removed','left')"
OLD_LIVE_PIN = sa.text("status <> 'removed'")
NEW_LIVE_PIN = sa.text("status NOT IN ('removed','left')")


def _statuses(check: str, live_pin) -> None:
    op.drop_index("uq_applications_pin_live", "applications")
    with op.batch_alter_table("applications") as batch:
        batch.drop_constraint("ck_applications_status", type_="check")
        batch.create_check_constraint("ck_applications_status", check)
    op.create_index("uq_applications_pin_live", "applications", ["pin"], unique=True,
                    postgresql_where=live_pin, sqlite_where=live_pin)


def upgrade() -> None:
    op.add_column("applications", sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
    _statuses(NEW_STATUSES, NEW_LIVE_PIN)
    op.add_column("kindergartens", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("place_publications", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("place_publications", sa.Column("cancelled_by", sa.String(100), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE applications SET status = 'removed', removed_at = left_at, "
               "removal_reason = 'left the kindergarten' WHERE status = 'left'")
    _statuses(OLD_STATUSES, OLD_LIVE_PIN)
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("left_at")
    with op.batch_alter_table("kindergartens") as batch:
        batch.drop_column("closed_at")
    with op.batch_alter_table("place_publications") as batch:
        batch.drop_column("cancelled_by")
        batch.drop_column("cancelled_at")
