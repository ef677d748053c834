"""The notifications service's tables. Its database is its own (kezek_notifications).

`messages` is both the delivery queue (status, next_attempt_at, lease) and
the record the operator and the parent's inbox read. Contacts and what is
known of applications and referrals are kept from the events that carry
them, so that a later event naming only an application reaches its parent.

Sealed at rest (kezek/sealing.py): the parents' phones and e-mails, each
message's address (with its lookup hash, on which the SMS pacing per phone
works), subject and text (they name the child and may carry a one-time
link), and parked events.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kezek.outbox import Payload
from kezek.sealing import Sealed
from kezek.tables import TYPE_MAP, service_tables


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


# The audit trail: every state change of a message, with the verified actor.
outbox, audit, retention_clock = service_tables(Base, "notifications")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # One event, one message per channel, whatever the redelivery.
        sa.UniqueConstraint("source_event_id", "channel", name="uq_messages_event_channel"),
        sa.Index("ix_messages_due", "status", "next_attempt_at"),
        # What a dispatcher claims: a channel's queued messages, urgent first,
        # in the order they come due (usecases/dispatching.py, `claims`); the
        # sent ones are not in it, so it stays the size of what waits.
        sa.Index("ix_messages_queued", "channel", sa.text("urgent DESC"), "next_attempt_at",
                 postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'")),
        sa.Index("ix_messages_parent", "parent_id", "created_at"),
        sa.Index("ix_messages_address", "channel", "address_hash", "created_at"),
    )
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    source_event_id: Mapped[str] = mapped_column(sa.String(36))
    source_event_type: Mapped[str] = mapped_column(sa.String(100), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    channel: Mapped[str] = mapped_column(sa.String(10))
    parent_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    application_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    referral_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    address: Mapped[str] = mapped_column(Sealed("message_address", hashed_as="address"))  # phone, e-mail or parent id (inbox)
    address_hash: Mapped[str] = mapped_column(sa.String(64))
    locale: Mapped[str] = mapped_column(sa.String(5))
    subject: Mapped[str | None] = mapped_column(Sealed("message_subject"), nullable=True)
    body: Mapped[str] = mapped_column(Sealed("message_body"))
    # In-app messages: the kind's parameters (JSON: the event's data and what
    # was known of its referral, and when it happened), rendered again in the
    # reader's language when the inbox is read.
    params: Mapped[str | None] = mapped_column(Sealed("message_params"), nullable=True)
    sms_encoding: Mapped[str | None] = mapped_column(sa.String(6), nullable=True)
    sms_segments: Mapped[int | None] = mapped_column(nullable=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(12))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The provider's acceptance, written alone the moment it answers: a send
    # known before its record is whole (dispatching.note_accepted).
    accepted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DeadLetter(Base):
    """A message given up: kept with why, for an operator to look at."""
    __tablename__ = "dead_letters"
    message_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("messages.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int]
    created_at: Mapped[datetime]


class Contact(Base):
    __tablename__ = "contacts"
    parent_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    email: Mapped[str | None] = mapped_column(Sealed("parent_email"), nullable=True)
    phone: Mapped[str | None] = mapped_column(Sealed("parent_phone"), nullable=True)
    locale: Mapped[str] = mapped_column(sa.String(5))
    updated_at: Mapped[datetime]


class KnownApplication(Base):
    __tablename__ = "applications"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    parent_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    last_position: Mapped[int | None] = mapped_column(nullable=True)
    top_ten_told: Mapped[bool] = mapped_column(default=False)
    imported: Mapped[bool] = mapped_column(default=False, server_default=sa.false())   # moved from the old portal


class KnownReferral(Base):
    """What earlier events said of a referral (kindergarten name, address,
    whether it needs confirmation), for the texts of later ones."""
    __tablename__ = "referrals"
    referral_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    application_id: Mapped[str] = mapped_column(sa.String(100))
    facts: Mapped[dict] = mapped_column(default=dict)


class ParkedEvent(Base):
    """An event whose parent is not known yet (its application's event has
    not arrived: another topic, no order between topics). Replayed when it is."""
    __tablename__ = "parked_events"
    event_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    application_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    payload: Mapped[str] = mapped_column(Payload())      # sealed when the event carries personal data
    parked_at: Mapped[datetime]


class ReceiptSignature(Base):
    """A delivery receipt's signature, seen once: the same signed receipt
    sent again within its time window is a replay. Rows older than the
    window are pruned (a stale timestamp is refused before it gets here)."""
    __tablename__ = "receipt_signatures"
    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    signed_at: Mapped[datetime] = mapped_column(index=True)
