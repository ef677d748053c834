"""Kindergartens, the register of free places, applications, referrals,
allocation runs and their audit, the audit log, policy versions and
allocation requests.

Revision ID: queue_0002
Revises: queue_0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "queue_0002"
down_revision = "queue_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Preferences = sa.JSON().with_variant(postgresql.ARRAY(sa.String(100)), "postgresql")


def _partial(name, table, cols, where, unique=False):
    op.create_index(name, table, cols, unique=unique, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    op.create_table(
        "kindergartens",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("district", sa.String(100), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("languages", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "applications",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("pin", sa.String(14), nullable=False),
        sa.Column("parent_id", sa.String(100), nullable=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("surname", sa.String(60), nullable=False),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("patronymic", sa.String(60), nullable=True),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("cohort", sa.Integer, nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("claimed_category", sa.String(50), nullable=False),
        sa.Column("queue_date", TS, nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("preferences", Preferences, nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("paused_until", TS, nullable=True),
        sa.Column("source_event_id", sa.String(36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.Column("removal_reason", sa.String(200), nullable=True),
        sa.CheckConstraint("status IN ('queued','referred','enrolled','paused','removed')",
                           name="ck_applications_status"),
        sa.CheckConstraint("status <> 'paused' OR paused_until IS NOT NULL", name="ck_applications_paused_until"),
    )
    _partial("uq_applications_pin_live", "applications", ["pin"], "status <> 'removed'", unique=True)
    op.create_index("ix_applications_group", "applications", ["cohort", "language", "status"])
    _partial("ix_applications_paused", "applications", ["paused_until"], "status = 'paused'")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_applications_prefs", "applications", ["preferences"], postgresql_using="gin")

    op.create_table(
        "places",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kindergarten_id", sa.String(100), sa.ForeignKey("kindergartens.id"), nullable=False),
        sa.Column("cohort", sa.Integer, nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("for_category", sa.String(50), nullable=False),
        sa.Column("free", sa.Integer, nullable=False),
        sa.Column("held", sa.Integer, nullable=False),
        sa.Column("enrolled", sa.Integer, nullable=False),
        sa.UniqueConstraint("kindergarten_id", "cohort", "language", "for_category", name="uq_places_pool"),
        sa.CheckConstraint("free >= 0", name="ck_places_free"),
        sa.CheckConstraint("held >= 0", name="ck_places_held"),
        sa.CheckConstraint("enrolled >= 0", name="ck_places_enrolled"),
    )
    _partial("ix_places_free", "places", ["id"], "free > 0")

    op.create_table(
        "place_publications",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kindergarten_id", sa.String(100), sa.ForeignKey("kindergartens.id"), nullable=False),
        sa.Column("cohort", sa.Integer, nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("for_category", sa.String(50), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("publish_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("count <> 0", name="ck_publications_count"),
    )
    _partial("ix_publications_due", "place_publications", ["publish_at"], "published_at IS NULL")

    op.create_table(
        "allocation_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("on_date", sa.Date, nullable=False),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("free_before", sa.JSON, nullable=False),
        sa.Column("candidates", sa.LargeBinary, nullable=False),
        sa.Column("candidates_count", sa.Integer, nullable=False),
        sa.Column("allocated", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )

    op.create_table(
        "referrals",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(100), sa.ForeignKey("applications.id"), nullable=False),
        sa.Column("place_id", BigId, sa.ForeignKey("places.id"), nullable=False),
        sa.Column("kindergarten_id", sa.String(100), nullable=False),
        sa.Column("cohort", sa.Integer, nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("for_category", sa.String(50), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("needs_confirmation", sa.Boolean, nullable=False),
        sa.Column("preference_index", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=True),
        sa.Column("run_id", BigId, sa.ForeignKey("allocation_runs.id"), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("workflow_started_at", TS, nullable=True),
        sa.CheckConstraint("status IN ('live','enrolled','ended')", name="ck_referrals_status"),
    )
    _partial("uq_referrals_live_child", "referrals", ["application_id"], "status = 'live'", unique=True)
    _partial("ix_referrals_unstarted", "referrals", ["id"], "workflow_started_at IS NULL")
    op.create_index("ix_referrals_application", "referrals", ["application_id"])

    op.create_table(
        "allocation_audit",
        sa.Column("run_id", BigId, sa.ForeignKey("allocation_runs.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("referral_id", BigId, nullable=False),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("kindergarten_id", sa.String(100), nullable=False),
        sa.Column("cohort", sa.Integer, nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("for_category", sa.String(50), nullable=True),
        sa.Column("preference_index", sa.Integer, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
    )
    op.create_index("ix_allocation_audit_application", "allocation_audit", ["application_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_subject", "audit_log", ["subject", "id"])

    op.create_table(
        "policy_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )

    op.create_table(
        "allocation_requests",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("dedupe_key", sa.String(100), nullable=True, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("run_id", BigId, nullable=True),
    )
    _partial("ix_allocation_requests_pending", "allocation_requests", ["id"], "done_at IS NULL")


def downgrade() -> None:
    for table in ("allocation_requests", "policy_versions", "audit_log", "allocation_audit", "referrals",
                  "allocation_runs", "place_publications", "places", "applications", "kindergartens"):
        op.drop_table(table)
