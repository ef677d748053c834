"""The public stream (projection state, public outbox) and webhooks.

Revision ID: gateway_0100_public
Revises: gateway_0001
"""
import sqlalchemy as sa
from alembic import op

from kezek.outbox import _outbox_columns

revision = "gateway_0100_public"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    unsent = sa.text("sent_at IS NULL")
    op.create_table("public_outbox", *_outbox_columns())
    op.create_index("ix_public_outbox_unsent", "public_outbox", ["seq"], postgresql_where=unsent, sqlite_where=unsent)
    op.create_table(
        "public_children",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("child_ref", sa.String(32), nullable=False),
        sa.Column("cohort", sa.Integer, nullable=True),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("district", sa.String(40), nullable=True),
        sa.Column("language", sa.String(5), nullable=True),
    )
    op.create_table(
        "public_referrals",
        sa.Column("referral_id", sa.String(100), primary_key=True),
        sa.Column("referral_ref", sa.String(32), nullable=False),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("kindergarten_id", sa.String(100), nullable=True),
        sa.Column("cohort", sa.Integer, nullable=True),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("language", sa.String(5), nullable=True),
    )
    op.create_table(
        "public_kindergartens",
        sa.Column("kindergarten_id", sa.String(100), primary_key=True),
        sa.Column("district", sa.String(40), nullable=False),
    )
    op.create_table(
        "public_parked_events",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("parked_at", When, nullable=False),
    )
    op.create_index("ix_public_parked_events_application_id", "public_parked_events", ["application_id"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(36),
                  sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("delivered_at", When, nullable=True),
        sa.UniqueConstraint("subscription_id", "event_id", "generation", name="uq_webhook_deliveries_event"),
        sa.CheckConstraint("status IN ('pending','delivered','dead','skipped')", name="ck_webhook_deliveries_status"),
    )
    pending = sa.text("status = 'pending'")
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=pending, sqlite_where=pending)
    op.create_index("ix_webhook_deliveries_subject", "webhook_deliveries", ["subscription_id", "subject", "id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", BigId, sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_table(
        "webhook_replays",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(36),
                  sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("partition", sa.Integer, nullable=True),
        sa.Column("from_offset", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("requested_at", When, nullable=False),
        sa.Column("done_at", When, nullable=True),
        sa.Column("queued", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("webhook_replays", "webhook_attempts", "webhook_deliveries", "webhook_subscriptions",
                  "public_parked_events", "public_kindergartens", "public_referrals", "public_children"):
        op.drop_table(table)
    op.drop_index("ix_public_outbox_unsent", "public_outbox")
    op.drop_table("public_outbox")
