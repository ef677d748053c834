"""Messages with their delivery state, dead letters, contacts, known
applications and referrals, parked events.

Revision ID: notifications_0002
Revises: notifications_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source_event_id", sa.String(36), nullable=False),
        sa.Column("source_event_type", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("parent_id", sa.String(100), nullable=True),
        sa.Column("application_id", sa.String(100), nullable=True),
        sa.Column("referral_id", sa.String(100), nullable=True),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sms_encoding", sa.String(6), nullable=True),
        sa.Column("sms_segments", sa.Integer, nullable=True),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("provider_ref", sa.String(200), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("failed_at", TS, nullable=True),
        sa.Column("read_at", TS, nullable=True),
        sa.UniqueConstraint("source_event_id", "channel", name="uq_messages_event_channel"),
    )
    op.create_index("ix_messages_due", "messages", ["status", "next_attempt_at"])
    op.create_index("ix_messages_parent", "messages", ["parent_id", "created_at"])
    op.create_index("ix_messages_address", "messages", ["channel", "address", "created_at"])
    op.create_index("ix_messages_source_event_type", "messages", ["source_event_type"])
    op.create_table(
        "dead_letters",
        sa.Column("message_id", sa.String(36), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "contacts",
        sa.Column("parent_id", sa.String(100), primary_key=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone", sa.String(16), nullable=True),
        sa.Column("locale", sa.String(5), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "applications",
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("parent_id", sa.String(100), nullable=False),
        sa.Column("last_position", sa.Integer, nullable=True),
        sa.Column("top_ten_told", sa.Boolean, nullable=False),
    )
    op.create_index("ix_applications_parent_id", "applications", ["parent_id"])
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(100), primary_key=True),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("facts", sa.JSON, nullable=False),
    )
    op.create_table(
        "parked_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("application_id", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("parked_at", TS, nullable=False),
    )
    op.create_index("ix_parked_events_application_id", "parked_events", ["application_id"])


def downgrade() -> None:
    for table in ("parked_events", "referrals", "applications", "contacts", "dead_letters", "messages"):
        op.drop_table(table)
