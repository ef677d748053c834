"""Staff and sessions, the read models of applicants and referrals,
certificates and scans, decisions, abuse cases, vouchers, and the
append-only audit log (triggers refuse UPDATE and DELETE; TRUNCATE too on
PostgreSQL).

Revision ID: verification_0002_cases
Revises: verification_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "verification_0002_cases"
down_revision = "verification_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")

PG_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION verification_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("login", sa.String(40), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("district", sa.String(100), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("last_failed_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("staff_id", sa.String(36), sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_staff_sessions_staff_id", "staff_sessions", ["staff_id"])
    op.create_table(
        "applicants",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("child_pin", sa.String(14), nullable=True),
        sa.Column("child_surname", sa.String(60), nullable=True),
        sa.Column("child_name", sa.String(60), nullable=True),
        sa.Column("child_patronymic", sa.String(60), nullable=True),
        sa.Column("child_birth_date", sa.Date, nullable=True),
        sa.Column("parent_id", sa.String(100), nullable=True),
        sa.Column("parent_phone", sa.String(20), nullable=True),
        sa.Column("parent_email", sa.String(254), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("region", sa.String(20), nullable=True),
        sa.Column("district", sa.String(100), nullable=True),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("submitted_category", sa.String(50), nullable=True),
        sa.Column("language", sa.String(5), nullable=True),
        sa.Column("queue_date", TS, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_applicants_child_pin", "applicants", ["child_pin"])
    op.create_index("ix_applicants_district", "applicants", ["district"])
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(100), primary_key=True),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("kindergarten_id", sa.String(100), nullable=True),
        sa.Column("kindergarten_name", sa.String(200), nullable=True),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("needs_confirmation", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("issued_at", TS, nullable=True),
        sa.Column("deadline", TS, nullable=True),
        sa.Column("certificate_requests", sa.Integer, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_referrals_application_id", "referrals", ["application_id"])
    op.create_index("ix_referrals_state", "referrals", ["state"])
    op.create_table(
        "referral_events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("referral_id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
    )
    op.create_index("ix_referral_events_referral_id", "referral_events", ["referral_id"])
    op.create_table(
        "scans",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("stored_at", TS, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(100), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=False),
        sa.Column("number", sa.String(50), nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("scan_sha256", sa.String(64), sa.ForeignKey("scans.sha256"), nullable=False),
        sa.Column("scan_name", sa.String(200), nullable=False),
        sa.Column("recorded_by", sa.String(36), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_index("ix_certificates_referral_id", "certificates", ["referral_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(100), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("result_event", sa.String(100), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("refusal", sa.String(1000), nullable=True),
        sa.Column("certificate_id", sa.String(36), nullable=True),
        sa.Column("staff_id", sa.String(36), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_decisions_referral_id", "decisions", ["referral_id"])
    op.create_table(
        "abuse_cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("child_pin", sa.String(14), nullable=False),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("district", sa.String(100), nullable=True),
        sa.Column("rule", sa.String(60), nullable=False),
        sa.Column("cycles", sa.Integer, nullable=False),
        sa.Column("referral_ids", sa.JSON, nullable=False),
        sa.Column("applications", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("resolved_by", sa.String(36), nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolution", sa.String(500), nullable=True),
        sa.Column("rejected_referral_id", sa.String(100), nullable=True),
    )
    op.create_index("ix_abuse_cases_child_pin", "abuse_cases", ["child_pin"])
    op.create_index("ix_abuse_cases_district", "abuse_cases", ["district"])
    # At most one open case per child: a redelivered or repeated detection
    # cannot raise a second one.
    open_ = sa.text("status = 'open'")
    op.create_index("ux_abuse_cases_open_child", "abuse_cases", ["child_pin"], unique=True,
                    postgresql_where=open_, sqlite_where=open_)
    op.create_table(
        "voucher_applications",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("district", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
    )
    op.create_index("ix_voucher_applications_district", "voucher_applications", ["district"])
    op.create_table(
        "voucher_decisions",
        sa.Column("number", SEQ, primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(100), nullable=False, unique=True),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("benefit_type", sa.String(30), nullable=True),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("members", sa.JSON, nullable=False),
        sa.Column("district", sa.String(100), nullable=True),
        sa.Column("decided_by", sa.String(36), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_id", sa.String(36), nullable=True),
        sa.Column("actor_login", sa.String(40), nullable=False),
        sa.Column("actor_role", sa.String(20), nullable=False),
        sa.Column("actor_district", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject_type", sa.String(30), nullable=False),
        sa.Column("subject_id", sa.String(100), nullable=False),
        sa.Column("district", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    for col in ("at", "actor_login", "action", "subject_id", "district"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])
    _append_only()


def _append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION verification_audit_append_only()")
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION verification_audit_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS verification_audit_append_only()")
    for table in ("audit_log", "voucher_decisions", "voucher_applications", "abuse_cases", "decisions",
                  "certificates", "scans", "referral_events", "referrals", "applicants", "staff_sessions",
                  "staff"):
        op.drop_table(table)
