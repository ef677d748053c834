"""On PostgreSQL the audit trail is append-only (kezek/audit.py)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.orm import Session

from kezek.audit import AuditTrail, create_audit_table
from kezek.trust import service_principal

pytestmark = pytest.mark.integration


def test_the_audit_trail_refuses_updates_and_deletes_on_postgresql(pg_url):
    engine = sa.create_engine(pg_url("audit"))
    with engine.begin() as conn:
        create_audit_table(Operations(MigrationContext.configure(conn)))
    trail = AuditTrail(sa.MetaData())
    with Session(engine) as s, s.begin():
        trail.record(s, service_principal("queue"), "application.queued", "application:1")
    for statement in ("UPDATE audit_trail SET actor = 'forged'", "DELETE FROM audit_trail"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    with engine.begin() as conn:           # the retention job's way: an explicit, audited rewrite
        conn.execute(sa.text("SET LOCAL kezek.audit_rewrite = 'on'"))
        conn.execute(sa.text("UPDATE audit_trail SET details = '{}'"))
    with Session(engine) as s:
        assert [r["actor"] for r in trail.trail(s)] == ["service:queue"]
    engine.dispose()
