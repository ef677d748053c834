"""The trust boundary: the audit trail (kezek/audit.py), request rate limits
(kezek/ratelimit.py), e-mail codes counted per address and client, and
sign-in throttling instead of the lock (login_failures gone).

Revision ID: registration_0004
Revises: registration_0003
"""
import sqlalchemy as sa
from alembic import op

from kezek.audit import create_audit_table, drop_audit_table
from kezek.ratelimit import create_rate_limit_table, drop_rate_limit_table

revision = "registration_0004"
down_revision = "registration_0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_audit_table(op)
    create_rate_limit_table(op)
    op.create_table(
        "code_sends",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("client_hash", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    for col in ("address_hash", "client_hash", "at"):
        op.create_index(f"ix_code_sends_{col}", "code_sends", [col])
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", TS, nullable=True),
        sa.Column("noticed_at", TS, nullable=True),
    )
    op.create_table(
        "sign_in_clients",
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("client_hash", sa.String(64), primary_key=True),
        sa.Column("last_at", TS, nullable=False),
    )
    op.drop_index("ix_login_failures_login", "login_failures")
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(254), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_login_failures_login", "login_failures", ["login"])
    op.drop_table("sign_in_clients")
    op.drop_table("sign_in_failures")
    op.drop_table("code_sends")
    drop_rate_limit_table(op)
    drop_audit_table(op)
