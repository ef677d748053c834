"""The rank-order index also carries the birth date and the preferences, so
the allocation's stream is an index-only scan: no visit to the table for the
children it passes over.

Revision ID: queue_0004
Revises: queue_0003
"""
from alembic import op

revision = "queue_0004"
down_revision = "queue_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_applications_rank_order")
        op.execute('CREATE INDEX ix_applications_rank_order ON applications '
                   '(cohort, language, category, queue_date, id COLLATE "C") INCLUDE (birth_date, preferences) '
                   "WHERE status = 'queued'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_applications_rank_order")
        op.execute('CREATE INDEX ix_applications_rank_order ON applications '
                   '(cohort, language, category, queue_date, id COLLATE "C") WHERE status = \'queued\'')
