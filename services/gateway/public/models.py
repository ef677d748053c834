"""Tables of the public stream and the webhooks, in the gateway's database.

The projector keeps only public facts (pseudonyms, cohort, category,
district, language, kindergarten): never a PIN, a name or an internal
contact. Public events leave through their own outbox (`public_outbox`),
which a relay of its own publishes to kezek.public.v1."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from kezek.outbox import Outbox, _outbox_columns
from services.gateway.models import Base, outbox as gateway_outbox

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
When = sa.DateTime(timezone=True)


class PublicOutbox(Outbox):
    """The Outbox contract on a table of its own, so the generic relay of
    the gateway's outbox never sends public events to an internal topic.
    Deduplication shares the gateway's processed_events. Public events carry
    no trace of ours: the contract is theirs (docs/events/asyncapi.yaml)."""

    carries_trace = False

    def __init__(self, metadata: sa.MetaData, source: str, processed: sa.Table):
        self.source = source
        unsent = sa.text("sent_at IS NULL")
        self.table = sa.Table("public_outbox", metadata, *_outbox_columns(),
                              sa.Index("ix_public_outbox_unsent", "seq", postgresql_where=unsent, sqlite_where=unsent))
        self.processed = processed


public_outbox = PublicOutbox(Base.metadata, "public", gateway_outbox.processed)


class _PublicFacts:
    """What the public stream says of a child (and of its referral): its
    cohort, category and the language of its group."""
    cohort: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    category: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    language: Mapped[str | None] = mapped_column(sa.String(5), nullable=True)


class PublicChild(_PublicFacts, Base):
    """A queue entry as the public stream knows it."""
    __tablename__ = "public_children"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    child_ref: Mapped[str] = mapped_column(sa.String(32))
    district: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)


class PublicReferral(_PublicFacts, Base):
    __tablename__ = "public_referrals"
    referral_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    referral_ref: Mapped[str] = mapped_column(sa.String(32))
    application_id: Mapped[str] = mapped_column(sa.String(100))
    kindergarten_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)


class PublicKindergarten(Base):
    __tablename__ = "public_kindergartens"
    kindergarten_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    district: Mapped[str] = mapped_column(sa.String(40))


class ParkedEvent(Base):
    """An internal event about a child the projector does not know yet
    (topics are not ordered among themselves); projected when it is."""
    __tablename__ = "public_parked_events"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    payload: Mapped[str] = mapped_column(sa.Text)
    parked_at: Mapped[datetime] = mapped_column(When)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    event_types: Mapped[list] = mapped_column(sa.JSON)   # public types; "*" for all
    secret: Mapped[str] = mapped_column(sa.String(100))  # HMAC key shared with the receiver
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(When)


DELIVERY_STATUSES = ("pending", "delivered", "dead", "skipped")


class WebhookDelivery(Base):
    """One public event for one subscription. `generation` is 0 for the live
    stream and the replay's id for a replay, so a replay delivers again."""
    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(sa.Integer, default=0)
    event_id: Mapped[str] = mapped_column(sa.String(36))
    event_type: Mapped[str] = mapped_column(sa.String(100))
    subject: Mapped[str] = mapped_column(sa.String(200))
    partition: Mapped[int] = mapped_column(sa.Integer)
    offset: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(When)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(When)
    delivered_at: Mapped[datetime | None] = mapped_column(When, nullable=True)

    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "event_id", "generation", name="uq_webhook_deliveries_event"),
        sa.CheckConstraint("status IN ('pending','delivered','dead','skipped')", name="ck_webhook_deliveries_status"),
        sa.Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'"),
                 sqlite_where=sa.text("status = 'pending'")),
        sa.Index("ix_webhook_deliveries_subject", "subscription_id", "subject", "id"),
    )


class WebhookAttempt(Base):
    """The delivery log: every try, with what the receiver answered."""
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    at: Mapped[datetime] = mapped_column(When)
    status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    duration_ms: Mapped[int] = mapped_column(sa.Integer)


class WebhookReplay(Base):
    """An administrator's request to deliver the stream again from an offset."""
    __tablename__ = "webhook_replays"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    partition: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)  # None: every partition
    from_offset: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(10), default="requested")   # requested | done
    requested_at: Mapped[datetime] = mapped_column(When)
    done_at: Mapped[datetime | None] = mapped_column(When, nullable=True)
    queued: Mapped[int] = mapped_column(sa.Integer, default=0)
