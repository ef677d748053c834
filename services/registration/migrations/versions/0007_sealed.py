"""Personal data sealed at rest (DOMAIN.md section 7, kezek/sealing.py): the
parents' and children's PINs (each with its lookup hash: one live
application per child is now a unique index on the child's hash, the
national sign-in finds a parent by the parent's), the account's e-mail (its
hash is unique and is how a login is found), names, phones, the parent's
identity document and the address (the `parent` and `address` JSON), and
the drafts' steps, sealed in place with the service's current key.

Revision ID: registration_0007_sealed
Revises: registration_0006
"""
import sqlalchemy as sa
from alembic import op

from kezek.migrations import open_rows, retype, seal_rows

revision = "registration_0007_sealed"
down_revision = "registration_0006"
branch_labels = None
depends_on = None

LIVE = sa.text("status NOT IN ('removed', 'refused', 'left')")
ACCOUNTS = {"email": ("account_email", 254), "pin": ("parent_pin", 14), "surname": ("parent_surname", 60),
            "name": ("parent_name", 60), "patronymic": ("parent_patronymic", 60), "phone": ("parent_phone", 16)}
APPLICATIONS = {"child_pin": ("child_pin", 14), "child_surname": ("child_surname", 60),
                "child_name": ("child_name", 60), "child_patronymic": ("child_patronymic", 60),
                "parent": ("application_parent", None), "address": ("application_address", None),
                "phone": ("parent_phone", 16), "email": ("parent_email", 254)}
DRAFTS = {"child": ("draft_child", None), "parent": ("draft_parent", None), "address": ("draft_address", None),
          "email_code": ("draft_email_code", None), "email_verified": ("draft_email_verified", 254)}


def _purposes(columns: dict) -> dict[str, str]:
    return {c: purpose for c, (purpose, _) in columns.items()}


def _clear_type(length):
    return sa.JSON if length is None else sa.String(length)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_accounts_pin", "accounts")
    if pg:   # SQLite keeps its unique index on the (now sealed, always distinct) e-mail: harmless
        op.drop_constraint("accounts_email_key", "accounts", type_="unique")
    for col in ACCOUNTS:
        retype(op, "accounts", col, sa.Text)
    op.add_column("accounts", sa.Column("email_hash", sa.String(64), nullable=True))
    op.add_column("accounts", sa.Column("pin_hash", sa.String(64), nullable=True))
    seal_rows(op, "accounts", "id", _purposes(ACCOUNTS),
              {"email_hash": ("email", "email"), "pin_hash": ("pin", "pin")})
    retype(op, "accounts", "email_hash", sa.String(64), nullable=False)
    retype(op, "accounts", "pin_hash", sa.String(64), nullable=False)
    op.create_index("ux_accounts_email_hash", "accounts", ["email_hash"], unique=True)
    op.create_index("ix_accounts_pin_hash", "accounts", ["pin_hash"])

    op.drop_index("ux_applications_live_child_pin", "applications")
    for col in APPLICATIONS:
        retype(op, "applications", col, sa.Text)
    op.add_column("applications", sa.Column("child_pin_hash", sa.String(64), nullable=True))
    seal_rows(op, "applications", "id", _purposes(APPLICATIONS), {"child_pin_hash": ("child_pin", "pin")})
    retype(op, "applications", "child_pin_hash", sa.String(64), nullable=False)
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin_hash"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)

    for col in DRAFTS:
        retype(op, "drafts", col, sa.Text)
    seal_rows(op, "drafts", "token_hash", _purposes(DRAFTS))


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    open_rows(op, "drafts", "token_hash", _purposes(DRAFTS))
    for col, (_, length) in DRAFTS.items():
        retype(op, "drafts", col, _clear_type(length))

    op.drop_index("ux_applications_live_child_pin", "applications")
    open_rows(op, "applications", "id", _purposes(APPLICATIONS))
    op.drop_column("applications", "child_pin_hash")
    for col, (_, length) in APPLICATIONS.items():
        retype(op, "applications", col, _clear_type(length))
    op.create_index("ux_applications_live_child_pin", "applications", ["child_pin"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)

    op.drop_index("ix_accounts_pin_hash", "accounts")
    op.drop_index("ux_accounts_email_hash", "accounts")
    open_rows(op, "accounts", "id", _purposes(ACCOUNTS))
    op.drop_column("accounts", "pin_hash")
    op.drop_column("accounts", "email_hash")
    for col, (_, length) in ACCOUNTS.items():
        retype(op, "accounts", col, sa.String(length))
    if pg:
        op.create_unique_constraint("accounts_email_key", "accounts", ["email"])
    op.create_index("ix_accounts_pin", "accounts", ["pin"])
