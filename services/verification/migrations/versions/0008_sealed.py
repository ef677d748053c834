"""Personal data sealed at rest (DOMAIN.md section 7, kezek/sealing.py): the
child's PIN (with its lookup hash, on which the searches and the
one-open-abuse-case index now work), names, the parent's phone and e-mail,
the certificate's number, organisation and file name, sealed in place with
the service's current key; the scans move out of the `scans` table into the
file store, each sealed with a data key of its own (kezek/files.py).

Revision ID: verification_0008_sealed
Revises: verification_0007
"""
import uuid

import sqlalchemy as sa
from alembic import op

from kezek.files import SealedFiles, open_store
from kezek.migrations import migration_settings, open_rows, retype, seal_rows
from kezek.sealing import ring_of

revision = "verification_0008_sealed"
down_revision = "verification_0007"
branch_labels = None
depends_on = None

APPLICANTS = {"child_pin": 14, "child_surname": 60, "child_name": 60, "child_patronymic": 60,
              "parent_phone": 20, "parent_email": 254}
CERTIFICATES = {"organisation": ("certificate_organisation", 200), "number": ("certificate_number", 50),
                "scan_name": ("scan_name", 200)}
OPEN = sa.text("status = 'open'")


def _files() -> SealedFiles:
    from services.verification.settings import as_settings

    settings = as_settings(migration_settings())
    return SealedFiles(open_store(settings.verification_file_store, settings.file_store_default()),
                       ring_of(op.get_bind()))


def upgrade() -> None:
    op.drop_index("ix_applicants_child_pin", "applicants")
    for col in APPLICANTS:
        retype(op, "applicants", col, sa.Text)
    op.add_column("applicants", sa.Column("child_pin_hash", sa.String(64), nullable=True))
    seal_rows(op, "applicants", "application_id", {c: c for c in APPLICANTS},
              {"child_pin_hash": ("child_pin", "pin")})
    op.create_index("ix_applicants_child_pin_hash", "applicants", ["child_pin_hash"])

    op.drop_index("ux_abuse_cases_open_child", "abuse_cases")
    op.drop_index("ix_abuse_cases_child_pin", "abuse_cases")
    retype(op, "abuse_cases", "child_pin", sa.Text)
    op.add_column("abuse_cases", sa.Column("child_pin_hash", sa.String(64), nullable=True))
    seal_rows(op, "abuse_cases", "id", {"child_pin": "child_pin"}, {"child_pin_hash": ("child_pin", "pin")})
    retype(op, "abuse_cases", "child_pin_hash", sa.String(64), nullable=False)
    op.create_index("ix_abuse_cases_child_pin_hash", "abuse_cases", ["child_pin_hash"])
    op.create_index("ux_abuse_cases_open_child", "abuse_cases", ["child_pin_hash"], unique=True,
                    postgresql_where=OPEN, sqlite_where=OPEN)

    for col in CERTIFICATES:
        retype(op, "certificates", col, sa.Text)
    seal_rows(op, "certificates", "id", {c: purpose for c, (purpose, _) in CERTIFICATES.items()})

    op.add_column("scans", sa.Column("file_name", sa.String(100), nullable=True))
    _scans_to_files()
    retype(op, "scans", "file_name", sa.String(100), nullable=False)
    op.drop_column("scans", "data")


def _scans_to_files() -> None:
    """Each scan into the file store, written and flushed before its row
    names it: a migration that fails leaves only unnamed files behind."""
    bind, files = op.get_bind(), _files()
    shas = [sha for (sha,) in bind.execute(sa.text("SELECT sha256 FROM scans WHERE file_name IS NULL"))]
    for sha in shas:
        data, content_type = bind.execute(sa.text("SELECT data, content_type FROM scans WHERE sha256 = :s"),
                                          {"s": sha}).one()
        name = f"scans/{uuid.uuid4()}"
        files.put(name, bytes(data), content_type=content_type)
        bind.execute(sa.text("UPDATE scans SET file_name = :n WHERE sha256 = :s"), {"n": name, "s": sha})


def downgrade() -> None:
    bind, files = op.get_bind(), _files()
    op.add_column("scans", sa.Column("data", sa.LargeBinary, nullable=True))
    for sha, name in bind.execute(sa.text("SELECT sha256, file_name FROM scans")).all():
        bind.execute(sa.text("UPDATE scans SET data = :d WHERE sha256 = :s"), {"d": files.get(name), "s": sha})
    retype(op, "scans", "data", sa.LargeBinary, nullable=False)
    op.drop_column("scans", "file_name")

    open_rows(op, "certificates", "id", {c: purpose for c, (purpose, _) in CERTIFICATES.items()})
    for col, (_, length) in CERTIFICATES.items():
        retype(op, "certificates", col, sa.String(length))

    op.drop_index("ux_abuse_cases_open_child", "abuse_cases")
    op.drop_index("ix_abuse_cases_child_pin_hash", "abuse_cases")
    open_rows(op, "abuse_cases", "id", {"child_pin": "child_pin"})
    op.drop_column("abuse_cases", "child_pin_hash")
    retype(op, "abuse_cases", "child_pin", sa.String(14))
    op.create_index("ix_abuse_cases_child_pin", "abuse_cases", ["child_pin"])
    op.create_index("ux_abuse_cases_open_child", "abuse_cases", ["child_pin"], unique=True,
                    postgresql_where=OPEN, sqlite_where=OPEN)

    op.drop_index("ix_applicants_child_pin_hash", "applicants")
    open_rows(op, "applicants", "application_id", {c: c for c in APPLICANTS})
    op.drop_column("applicants", "child_pin_hash")
    for col, length in APPLICANTS.items():
        retype(op, "applicants", col, sa.String(length))
    op.create_index("ix_applicants_child_pin", "applicants", ["child_pin"])
