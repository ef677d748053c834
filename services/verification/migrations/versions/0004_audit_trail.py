"""The one audit model of every service (kezek/audit.py): `audit_trail`
replaces `audit_log`. Every existing entry is copied over in its order, with
the verified actor as the model names it (`staff:<id>`; `service:verification`
for the abuse rule; `service:cli` for `kezek staff-add`; `anonymous` for a
refused sign-in, whose login becomes the subject `login:<login>`), looks
apart from acts, and `<type>:<id>` subjects. The table stays append-only:
the model's trigger on PostgreSQL (plus one against TRUNCATE, as before),
triggers refusing UPDATE and DELETE on SQLite.

Revision ID: verification_0004_audit
Revises: verification_0003_throttle
"""
import sqlalchemy as sa
from alembic import op

from kezek.audit import AuditTrail, create_audit_table, drop_audit_table

revision = "verification_0004_audit"
down_revision = "verification_0003_throttle"
branch_labels = None
depends_on = None

LOOKS = ("worklist.view", "case.view", "scan.view", "abuse.list", "abuse.view", "voucher.list", "voucher.view",
         "voucher.print", "audit.search")
_LOOKS_SQL = ", ".join(f"'{a}'" for a in LOOKS)

COPY = f"""
INSERT INTO audit_trail (at, kind, actor, actor_role, via, action, subject, district, outcome, reason, details,
                         request_id)
SELECT at,
       CASE WHEN action IN ({_LOOKS_SQL}) THEN 'look' ELSE 'act' END,
       CASE WHEN actor_id IS NOT NULL THEN 'staff:' || actor_id
            WHEN actor_role = 'system' THEN 'service:verification'
            WHEN action = 'staff.add' THEN 'service:cli'
            ELSE 'anonymous' END,
       CASE WHEN actor_id IS NOT NULL THEN actor_role
            WHEN actor_role = 'system' OR action = 'staff.add' THEN 'service'
            ELSE 'anonymous' END,
       NULL, action,
       CASE WHEN action IN ('login', 'logout') THEN 'login:' || actor_login
            WHEN subject_type <> '' THEN subject_type || ':' || subject_id
            ELSE subject_id END,
       NULLIF(district, ''), outcome, NULL, detail, NULL
FROM audit_log ORDER BY seq
"""

PG_NO_TRUNCATE = ("CREATE TRIGGER audit_trail_no_truncate BEFORE TRUNCATE ON audit_trail "
                  "FOR EACH STATEMENT EXECUTE FUNCTION kezek_audit_append_only()")


def upgrade() -> None:
    create_audit_table(op)
    op.execute(COPY)
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(PG_NO_TRUNCATE)
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS verification_audit_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb.lower()}")
            op.execute(f"CREATE TRIGGER audit_trail_no_{verb.lower()} BEFORE {verb} ON audit_trail "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only: {verb} refused'); END")
    op.drop_table("audit_log")


def downgrade() -> None:
    """Back to `audit_log` with its triggers, entries copied back (what the
    old model cannot hold, `via` and the request id, is lost)."""
    seq = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    columns = [sa.Column(n, t, nullable=n == "actor_id") for n, t in (
        ("at", sa.DateTime(timezone=True)), ("actor_id", sa.String(36)), ("actor_login", sa.String(40)),
        ("actor_role", sa.String(20)), ("actor_district", sa.String(100)), ("action", sa.String(40)),
        ("subject_type", sa.String(30)), ("subject_id", sa.String(100)), ("district", sa.String(100)),
        ("outcome", sa.String(20)), ("detail", sa.JSON))]
    log = op.create_table("audit_log", sa.Column("seq", seq, primary_key=True, autoincrement=True), *columns)
    for col in ("at", "actor_login", "action", "subject_id", "district"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])
    trail = AuditTrail(sa.MetaData()).table
    staff = sa.table("staff", sa.column("id"), sa.column("login"), sa.column("district"))
    rows = op.get_bind().execute(
        sa.select(trail, staff.c.login, staff.c.district.label("staff_district"))
        .outerjoin(staff, trail.c.actor == sa.literal("staff:") + staff.c.id).order_by(trail.c.id)).mappings().all()
    op.bulk_insert(log, [_old_entry(r) for r in rows])
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP TRIGGER IF EXISTS audit_trail_no_truncate ON audit_trail" if postgres else
               "DROP TRIGGER IF EXISTS audit_trail_no_update")
    if not postgres:
        op.execute("DROP TRIGGER IF EXISTS audit_trail_no_delete")
    drop_audit_table(op)
    # The old table's triggers, as migration 0002 made them.
    row, statement = ("FOR EACH ROW EXECUTE FUNCTION verification_audit_append_only()",
                      "FOR EACH STATEMENT EXECUTE FUNCTION verification_audit_append_only()")
    triggers = {"append_only": ("UPDATE OR DELETE", row), "no_truncate": ("TRUNCATE", statement)} if postgres else {
        f"no_{verb.lower()}": (verb, f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} refused'); END")
        for verb in ("UPDATE", "DELETE")}
    if postgres:
        op.execute("CREATE OR REPLACE FUNCTION verification_audit_append_only() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = "
                   "'insufficient_privilege'; END $$ LANGUAGE plpgsql")
    for name, (verbs, body) in triggers.items():
        op.execute(f"CREATE TRIGGER audit_log_{name} BEFORE {verbs} ON audit_log {body}")


def _old_entry(r) -> dict:
    kind, _, ident = r["subject"].partition(":")
    if not ident:
        kind, ident = "", r["subject"]
    staff = r["actor"].startswith("staff:")
    login = r["login"] or (ident if kind == "login" else "system" if r["actor_role"] == "service" else "")
    role = r["actor_role"] if staff else "system" if r["actor"] == "service:verification" else ""
    return {"at": r["at"], "actor_id": r["actor"][6:] if staff else None, "actor_login": login[:40],
            "actor_role": role, "actor_district": r["staff_district"] or "", "action": r["action"][:40],
            "subject_type": "" if kind == "login" else kind, "subject_id": "" if kind == "login" else ident,
            "district": r["district"] or "", "outcome": r["outcome"], "detail": r["details"]}
