"""The waiting children of one cohort, language and category in queue-date
order, as an index: the allocation streams them in rank order (category by
category) without sorting and stops reading once the places are gone.

Revision ID: queue_0003
Revises: queue_0002
"""
from alembic import op

revision = "queue_0003"
down_revision = "queue_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # id in the "C" collation: Python compares the tie-break by code point.
        op.execute('CREATE INDEX ix_applications_rank_order ON applications '
                   '(cohort, language, category, queue_date, id COLLATE "C") WHERE status = \'queued\'')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_applications_rank_order")
