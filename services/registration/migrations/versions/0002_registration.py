"""Drafts, accounts, activation links, applications, sessions, login
failures and sign-ins through the national identity provider.

Revision ID: registration_0002
Revises: registration_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "registration_0002"
down_revision = "registration_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("status <> 'removed'")


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("child", sa.JSON, nullable=False),
        sa.Column("parent", sa.JSON, nullable=False),
        sa.Column("address", sa.JSON, nullable=False),
        sa.Column("email_code", sa.JSON, nullable=True),
        sa.Column("email_verified", sa.String(254), nullable=True),
        sa.Column("application_id", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("pin", sa.String(14), nullable=False),
        sa.Column("surname", sa.String(60), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("patronymic", sa.String(60), nullable=True),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("tunduk_sub", sa.String(200), nullable=True, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("activated_at", TS, nullable=True),
    )
    op.create_index("ix_accounts_pin", "accounts", ["pin"])
    op.create_table(
        "activation_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )
    op.create_index("ix_activation_tokens_account_id", "activation_tokens", ["account_id"])
    op.create_table(
        "applications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("child_pin", sa.String(14), nullable=False),
        sa.Column("child_surname", sa.String(60), nullable=False),
        sa.Column("child_name", sa.String(60), nullable=False),
        sa.Column("child_patronymic", sa.String(60), nullable=True),
        sa.Column("child_birth_date", sa.Date, nullable=False),
        sa.Column("child_sex", sa.String(6), nullable=True),
        sa.Column("parent", sa.JSON, nullable=False),
        sa.Column("address", sa.JSON, nullable=False),
        sa.Column("phone", sa.String(16), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("preferences", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
    )
    op.create_index("ix_applications_account_id", "applications", ["account_id"])
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("via", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_sessions_account_id", "sessions", ["account_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(254), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_login_failures_login", "login_failures", ["login"])
    op.create_table(
        "oidc_requests",
        sa.Column("state", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(500), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )


def downgrade() -> None:
    for table in ("oidc_requests", "login_failures", "sessions", "applications",
                  "activation_tokens", "accounts", "drafts"):
        op.drop_table(table)
