"""The child's PIN and names sealed at rest (DOMAIN.md section 7,
kezek/sealing.py): sealed in place with the service's current key; the
one-entry-per-child index moves to the PIN's lookup hash; the public
queue's masked name is kept beside them (it is published anyway).

Revision ID: queue_0012_sealed
Revises: queue_0011_retention
"""
import sqlalchemy as sa
from alembic import op

from kezek.migrations import open_rows, retype, seal_rows
from services.queue.domain.entries import mask_name

revision = "queue_0012_sealed"
down_revision = "queue_0011_retention"
branch_labels = None
depends_on = None

COLUMNS = {"pin": ("child_pin", 14), "surname": ("child_surname", 60), "name": ("child_name", 60),
           "patronymic": ("child_patronymic", 60)}
NOT_REMOVED = sa.text("status NOT IN ('removed','left')")


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("applications", sa.Column("pin_hash", sa.String(64), nullable=True))
    op.add_column("applications", sa.Column("masked_name", sa.String(80), nullable=False, server_default=""))
    rows = bind.execute(sa.text("SELECT id, surname, name, patronymic FROM applications")).all()
    if rows:
        bind.execute(sa.text("UPDATE applications SET masked_name = :m WHERE id = :id"),
                     [{"id": i, "m": mask_name(s, n, p)} for i, s, n, p in rows])
    for col in COLUMNS:
        retype(op, "applications", col, sa.Text)
    seal_rows(op, "applications", "id", {c: purpose for c, (purpose, _) in COLUMNS.items()},
              {"pin_hash": ("pin", "pin")})
    retype(op, "applications", "pin_hash", sa.String(64), nullable=False)
    op.drop_index("uq_applications_pin_live", "applications")
    op.create_index("uq_applications_pin_live", "applications", ["pin_hash"], unique=True,
                    postgresql_where=NOT_REMOVED, sqlite_where=NOT_REMOVED)


def downgrade() -> None:
    op.drop_index("uq_applications_pin_live", "applications")
    open_rows(op, "applications", "id", {c: purpose for c, (purpose, _) in COLUMNS.items()})
    for col, (_, length) in COLUMNS.items():
        retype(op, "applications", col, sa.String(length))
    op.create_index("uq_applications_pin_live", "applications", ["pin"], unique=True,
                    postgresql_where=NOT_REMOVED, sqlite_where=NOT_REMOVED)
    op.drop_column("applications", "masked_name")
    op.drop_column("applications", "pin_hash")
