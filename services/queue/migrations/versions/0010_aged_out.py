"""Ageing out (DOMAIN.md section 3): the entry status `aged_out`, and an
index of waiting children by birth date, so the daily job finds the day's
birthdays without reading the queue.

Revision ID: queue_0010_aged_out
Revises: queue_0009_leaving_and_closing
"""
import sqlalchemy as sa
from alembic import op

revision = "queue_0010_aged_out"
down_revision = "queue_0009_leaving_and_closing"
branch_labels = None
depends_on = None

OLD = "status IN ('queued','referred','enrolled','paused','removed','left')"
NEW = "status IN ('queued','referred','enrolled','paused','removed','left','aged_out')"
WAITING = sa.text("status IN ('queued', 'paused')")


def _status_check(condition: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_applications_status", "applications", type_="check")
        op.create_check_constraint("ck_applications_status", "applications", condition)
        return
    # SQLite cannot alter a constraint: the table is copied (its indexes,
    # partial ones included, are created again from the reflected table).
    with op.batch_alter_table("applications", recreate="always") as batch:
        batch.drop_constraint("ck_applications_status", type_="check")
        batch.create_check_constraint("ck_applications_status", condition)


def upgrade() -> None:
    _status_check(NEW)
    # Only waiting children are in it, and each leaves it on its birthday:
    # the job's range scan reads that day's children and nothing else.
    op.create_index("ix_applications_school_age", "applications", ["birth_date"],
                    postgresql_where=WAITING, sqlite_where=WAITING)


def downgrade() -> None:
    op.drop_index("ix_applications_school_age", "applications")
    op.execute("UPDATE applications SET status = 'removed' WHERE status = 'aged_out'")
    _status_check(OLD)
