"""What the notifications routers share: the service, bounded inputs, the
shapes they answer with."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel

from kezek.openapi import example
from services.notifications.domain import REDACTED, SECRET_KINDS
from services.notifications.models import Message
from services.notifications.service import NotificationService, aware

PREFIX = "/api/v1/notifications"
PublicStatus = Literal["queued", "sent", "delivered", "failed"]

# Bounds: a number or a string past them is a 422 naming it, never a
# database error (an offset beyond bigint, a NUL in a string).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
MessageId = Annotated[str, Path(min_length=1, max_length=36, pattern=_PRINTABLE)]
ParentId = Annotated[str, Path(min_length=1, max_length=100, pattern=_PRINTABLE)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=100_000)]


def text_query(max_length: int):
    return Query(max_length=max_length, pattern=_PRINTABLE)


def get_service(request: Request) -> NotificationService:
    return request.app.state.notifications


Service = Annotated[NotificationService, Depends(get_service)]


def _mask(channel: str, address: str) -> str:
    """Operators see enough to tell two parents apart, not a contact list."""
    if channel == "sms":
        return address[:6] + "*" * max(0, len(address) - 9) + address[-3:]
    if channel == "email" and "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    return address


class MessageOut(BaseModel):
    model_config = example(id="5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e01", parent_id="acc-9c1e", application_id="app-1f3a",
                           referral_id="7", event_id="0f9e6a42-3c1d-4b9a-8d7e-1a2b3c4d5e6f",
                           event_type="referral.issued.v1", kind="referral_issued", channel="sms",
                           address="+99655****456", locale="ky", subject=None,
                           body="Kezek: Айбек «Ак-Бата» бала бакчасына жолдомо алды. 10-мартка чейин кабыл алыңыз.",
                           sms_segments=2, sms_encoding="UCS-2", status="delivered", attempts=1, next_attempt_at=None,
                           last_error=None, created_at="2027-03-01T09:00:06+06:00",
                           sent_at="2027-03-01T09:00:07+06:00", delivered_at="2027-03-01T09:00:12+06:00",
                           failed_at=None)
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
