"""One audit model for every service (DOMAIN.md section 6): each state change
and each staff look at a child's personal data, with the verified actor that
caused it.

Every service has the same `audit_trail` table in its own database, bound to
its metadata like the outbox (`AuditTrail(metadata)`), created by its
migrations with `create_audit_table(op)`. A record is written in the
transaction of the change it describes: the change and its record commit or
roll back together. A refusal of access is recorded in a transaction of its
own (`outcome="denied"`), since the refused work rolls back and the record of
the attempt must not.

    trail.record(s, access.principal, "referral.enrolled", "referral:42",
                 district="Bishkek/Leninsky", details={"kindergarten": "sun-1"})
    trail.look(s, principal, "case.viewed", "application:7", why="privilege check")

On PostgreSQL the table is append-only: a trigger refuses DELETE, and UPDATE
unless the session set `kezek.audit_rewrite` to `on` (what the retention
job does to anonymise the details of closed applications). That is the one
rewrite path, `AuditTrail.rewrite`: it opens the gate for its own
transaction only (`set_config(..., true)`; on SQLite, where a service's
triggers refuse UPDATE, a row of `audit_rewrite_open` that it removes
again), rewrites the `details` of the rows of the subjects it is given and
nothing else (who, what, when and the outcome stay), and closes the gate.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from kezek.trust import Principal

# SQLite: while this table has a row, a service's append-only triggers let
# an UPDATE through (the rewrite path below adds and removes the row in its
# own transaction).
REWRITE_GATE = "audit_rewrite_open"

ACT = "act"       # a state change
LOOK = "look"     # a staff look at personal data
KINDS = (ACT, LOOK)
OUTCOMES = ("ok", "refused", "denied", "failed")   # failed: a dependency did not answer, nothing changed


def _columns() -> list[sa.Column]:
    big = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    return [
        sa.Column("id", big, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("via", sa.String(20), nullable=True),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("district", sa.String(100), nullable=True),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("request_id", sa.String(100), nullable=True),
    ]


def _indexes(table: str = "audit_trail") -> list[tuple[str, list[str]]]:
    return [(f"ix_{table}_subject", ["subject", "id"]), (f"ix_{table}_actor", ["actor", "id"]),
            (f"ix_{table}_at", ["at"])]


APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION kezek_audit_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND current_setting('kezek.audit_rewrite', true) = 'on' THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_trail is append-only';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON audit_trail
  FOR EACH ROW EXECUTE FUNCTION kezek_audit_append_only();
"""


def create_audit_table(op) -> None:
    """Migration step: the table, its indexes and (PostgreSQL) the trigger."""
    op.create_table("audit_trail", *_columns())
    for name, cols in _indexes():
        op.create_index(name, "audit_trail", cols)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_SQL)


def drop_audit_table(op) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_trail_append_only ON audit_trail")
        op.execute("DROP FUNCTION IF EXISTS kezek_audit_append_only()")
    op.drop_table("audit_trail")


class AuditTrail:
    def __init__(self, metadata: sa.MetaData):
        cols = _columns()
        self.table = sa.Table("audit_trail", metadata, *cols,
                              *(sa.Index(name, *c) for name, c in _indexes()))
        self._insert = self.table.insert()

    def record(self, session: Session, who: Principal, action: str, subject: str, *,
               details: dict[str, Any] | None = None, district: str | None = None, outcome: str = "ok",
               reason: str | None = None, kind: str = ACT, at: datetime | None = None) -> None:
        if kind not in KINDS or outcome not in OUTCOMES:
            raise ValueError(f"audit: kind {kind!r} / outcome {outcome!r}")
        # The values as parameters of one statement (with them inline, every
        # row was a new statement to key and compile).
        session.execute(self._insert, self._row(
            who, action, subject, details=details, district=district, outcome=outcome, reason=reason,
            kind=kind, at=at))

    def look(self, session: Session, who: Principal, action: str, subject: str, *, why: str | None = None,
             details: dict[str, Any] | None = None, district: str | None = None) -> None:
        """A staff look at personal data: who, what, why."""
        self.record(session, who, action, subject, details=details, district=district, reason=why, kind=LOOK)

    def record_many(self, session: Session, who: Principal, rows: list[dict[str, Any]],
                    at: datetime | None = None) -> None:
        """Bulk: each row has action, subject and optional details/district."""
        if rows:
            session.execute(self.table.insert(), [
                self._row(who, r["action"], r["subject"], details=r.get("details"), district=r.get("district"),
                          outcome=r.get("outcome", "ok"), reason=r.get("reason"), kind=r.get("kind", ACT), at=at)
                for r in rows])

    def record_from_query(self, session: Session, who: Principal, rows_sql: str, params: dict[str, Any],
                          at: datetime | None = None) -> int:
        """`record_many` for rows PostgreSQL builds itself, never passing
        through Python: `rows_sql` is a SELECT giving `action`, `subject` and
        `details` (json) per row, with its `params` (psycopg's %(name)s
        style; names starting with `_au_` are taken). Each row is an act of
        `who` at one moment that went through, as `record_many` writes it.
        In the caller's transaction; returns how many."""
        row = self._row(who, "", "", details=None, district=None, outcome="ok", reason=None, kind=ACT, at=at)
        fixed = {f"_au_{k}": row[k] for k in ("at", "kind", "actor", "actor_role", "via", "district", "outcome",
                                               "reason", "request_id")}
        sql = f"""
            INSERT INTO {self.table.name} (at, kind, actor, actor_role, via, action, subject, district, outcome,
                                           reason, details, request_id)
            SELECT CAST(%(_au_at)s AS timestamptz), %(_au_kind)s, %(_au_actor)s, %(_au_actor_role)s, %(_au_via)s,
                   action, subject, %(_au_district)s, %(_au_outcome)s, %(_au_reason)s, details, %(_au_request_id)s
            FROM ({rows_sql}) AS _au_rows"""
        with session.connection().connection.driver_connection.cursor() as cur:
            # Not prepared: constants (lists of keys) are hashed by the planner.
            return cur.execute(sql, {**params, **fixed}, prepare=False).rowcount

    @staticmethod
    def _row(who: Principal, action: str, subject: str, *, details, district, outcome, reason, kind, at) -> dict:
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        return dict(at=at or datetime.now(UTC), kind=kind, actor=who.actor, actor_role=who.role, via=who.via,
                    action=action, subject=subject, district=district or who.district, outcome=outcome,
                    reason=reason, details=details or {}, request_id=request_id)

    def rewrite(self, session: Session, subjects: list[str], scrub: Callable[[Any], Any]) -> int:
        """The explicit rewrite path (the retention job's): the details of the
        rows about `subjects`, passed through `scrub`; the rest of each row
        stays. In the caller's transaction; returns the rows rewritten."""
        if not subjects:
            return 0
        t = self.table
        postgres = session.get_bind().dialect.name == "postgresql"
        gate = not postgres and bool(session.execute(sa.text(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": REWRITE_GATE}).first())
        if postgres:
            session.execute(sa.text("SELECT set_config('kezek.audit_rewrite', 'on', true)"))
        elif gate:
            session.execute(sa.text(f"INSERT INTO {REWRITE_GATE} (opened) VALUES (1)"))
        changed = []
        for part in range(0, len(subjects), 1000):
            rows = session.execute(sa.select(t.c.id, t.c.details).where(
                t.c.subject.in_(subjects[part:part + 1000]))).all()
            changed += [{"row_id": i, "new": scrub(d)} for i, d in rows if scrub(d) != d]
        if changed:
            session.execute(t.update().where(t.c.id == sa.bindparam("row_id")).values(details=sa.bindparam("new")),
                            changed)
        if postgres:
            session.execute(sa.text("SELECT set_config('kezek.audit_rewrite', 'off', true)"))
        elif gate:
            session.execute(sa.text(f"DELETE FROM {REWRITE_GATE}"))
        return len(changed)

    def trail(self, session: Session, *, subject: str | None = None, actor: str | None = None,
              kind: str | None = None, after_id: int = 0, limit: int = 200) -> list[dict]:
        t = self.table
        q = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        if subject is not None:
            q = q.where(t.c.subject == subject)
        if actor is not None:
            q = q.where(t.c.actor == actor)
        if kind is not None:
            q = q.where(t.c.kind == kind)
        return [_view(r) for r in session.execute(q).mappings()]


def _view(row) -> dict:
    out = dict(row)
    at = out["at"]
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    out["at"] = at.isoformat() if at else None
    return out
