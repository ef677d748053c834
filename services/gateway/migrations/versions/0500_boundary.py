"""The trust boundary: request rate limits every gateway replica shares
(kezek/ratelimit.py) and the audit trail of the administrators' acts on
webhooks (kezek/audit.py).

Revision ID: gateway_0500_boundary
Revises: gateway_0400_position_point_ids
"""
from alembic import op

from kezek.audit import create_audit_table, drop_audit_table
from kezek.ratelimit import create_rate_limit_table, drop_rate_limit_table

revision = "gateway_0500_boundary"
down_revision = "gateway_0400_position_point_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_rate_limit_table(op)
    create_audit_table(op)


def downgrade() -> None:
    drop_audit_table(op)
    drop_rate_limit_table(op)
