"""HTTP API of the notifications service (internal: called by the gateway
for the parent's cabinet and by operators' tools, and by the SMS gateway for
delivery receipts)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field, model_validator

from kezek.settings import Settings
from kezek.web import DomainError, create_service_app, database_check
from services.notifications.domain import REDACTED, SECRET_KINDS
from services.notifications.models import Message
from services.notifications.service import NotificationService, aware

PREFIX = "/api/v1/notifications"
PublicStatus = Literal["queued", "sent", "delivered", "failed"]


def _mask(channel: str, address: str) -> str:
    """Operators see enough to tell two parents apart, not a contact list."""
    if channel == "sms":
        return address[:6] + "*" * max(0, len(address) - 9) + address[-3:]
    if channel == "email" and "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    return address


class MessageOut(BaseModel):
    id: str
    parent_id: str | None
    application_id: str | None
    referral_id: str | None
    event_id: str
    event_type: str
    kind: str
    channel: str
    address: str
    locale: str
    subject: str | None
    body: str
    sms_segments: int | None
    sms_encoding: str | None
    status: PublicStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None

    @classmethod
    def of(cls, m: Message) -> "MessageOut":
        return cls(
            id=m.id, parent_id=m.parent_id, application_id=m.application_id, referral_id=m.referral_id,
            event_id=m.source_event_id, event_type=m.source_event_type, kind=m.kind, channel=m.channel,
            address=_mask(m.channel, m.address), locale=m.locale,
            # Codes and one-time links are the parent's, even from operators.
            subject=REDACTED if m.kind in SECRET_KINDS else m.subject,
            body=REDACTED if m.kind in SECRET_KINDS else m.body,
            sms_segments=m.sms_segments, sms_encoding=m.sms_encoding,
            status="queued" if m.status == "sending" else m.status, attempts=m.attempts,
            next_attempt_at=aware(m.next_attempt_at), last_error=m.last_error, created_at=aware(m.created_at),
            sent_at=aware(m.sent_at), delivered_at=aware(m.delivered_at), failed_at=aware(m.failed_at),
        )


class InboxItem(BaseModel):
    id: str
    kind: str
    title: str | None
    text: str
    created_at: datetime
    read: bool


class Inbox(BaseModel):
    parent_id: str
    unread: int
    messages: list[InboxItem]


class Receipt(BaseModel):
    """A delivery receipt: `reference` is our message id, `id` the gateway's."""
    id: str | None = Field(default=None, max_length=200)
    reference: str | None = Field(default=None, max_length=36)
    status: Literal["delivered", "failed", "undelivered", "rejected", "expired"]
    error: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _names_a_message(self) -> "Receipt":
        if not (self.id or self.reference):
            raise ValueError("id or reference is required")
        return self


def get_service(request: Request) -> NotificationService:
    return request.app.state.notifications


Service = Annotated[NotificationService, Depends(get_service)]
router = APIRouter(prefix=PREFIX, tags=["notifications"])


@router.get("/messages", response_model=list[MessageOut], summary="Operator view: messages by parent, status, event")
def list_messages(service: Service,
                  parent_id: Annotated[str | None, Query(max_length=100)] = None,
                  status: PublicStatus | None = None,
                  event_type: Annotated[str | None, Query(max_length=100)] = None,
                  kind: Annotated[str | None, Query(max_length=40)] = None,
                  channel: Literal["sms", "email", "inapp"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100,
                  offset: Annotated[int, Query(ge=0)] = 0):
    rows = service.messages(parent_id=parent_id, status=status, event_type=event_type, kind=kind,
                            channel=channel, limit=limit, offset=offset)
    return [MessageOut.of(m) for m in rows]


@router.get("/messages/{message_id}", response_model=MessageOut)
def get_message(service: Service, message_id: str):
    m = service.message(message_id)
    if m is None:
        raise DomainError("no such message", field="message_id", status_code=404)
    return MessageOut.of(m)


@router.get("/dead-letters", summary="Messages given up, with why")
def dead_letters(service: Service, limit: Annotated[int, Query(ge=1, le=500)] = 100):
    return [{"message": MessageOut.of(m), "reason": dl.reason, "attempts": dl.attempts,
             "at": aware(dl.created_at)} for m, dl in service.dead_letters(limit)]


@router.get("/inbox/{parent_id}", response_model=Inbox, summary="The parent's in-app messages (for the cabinet)")
def inbox(service: Service, parent_id: str, unread_only: bool = False,
          limit: Annotated[int, Query(ge=1, le=200)] = 50):
    rows = service.inbox(parent_id, unread_only=unread_only, limit=limit)
    return Inbox(parent_id=parent_id, unread=service.unread(parent_id), messages=[
        InboxItem(id=m.id, kind=m.kind, title=m.subject, text=m.body, created_at=aware(m.created_at),
                  read=m.read_at is not None) for m in rows])


@router.post("/inbox/{parent_id}/{message_id}/read", status_code=204)
def mark_read(service: Service, parent_id: str, message_id: str):
    if not service.mark_read(parent_id, message_id):
        raise DomainError("no such message in this parent's inbox", field="message_id", status_code=404)


@router.post("/sms/receipts", status_code=204, summary="Delivery receipts from the SMS gateway")
def sms_receipt(service: Service, receipt: Receipt):
    found = service.record_receipt(message_id=receipt.reference, provider_ref=receipt.id,
                                   delivered=receipt.status == "delivered", error=receipt.error or receipt.status)
    if not found:
        raise DomainError("no message with this id or reference", field="reference", status_code=404)


def create_app(settings: Settings, service: NotificationService | None = None) -> FastAPI:
    from services.notifications.runtime import build_service

    service = service or build_service(settings)
    engine = service.sessions.kw["bind"]
    app = create_service_app("notifications", ready_checks=[("database", database_check(engine))])
    app.state.notifications = service
    app.include_router(router)
    return app
