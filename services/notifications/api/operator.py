"""The operators' views: every message, dead letters, the audit trail, and
sending a failed message again. Staff with the operator or admin role only
(vouched by the staff pages, or the `kezek` command line as admin): message
bodies name children."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kezek.openapi import example
from kezek.trust import Access, allow, staff
from kezek.web import DomainError
from services.notifications.api.common import (
    PREFIX, Limit, MessageId, MessageOut, Offset, PublicStatus, Service, text_query,
)
from services.notifications.service import aware

OPERATORS = staff("operator", "admin")
router = APIRouter(prefix=PREFIX, tags=["operators"])


class DeadLetterOut(BaseModel):
    model_config = example(message={**MessageOut.model_json_schema()["examples"][0], "status": "failed",
                                    "attempts": 12, "delivered_at": None, "failed_at": "2027-03-02T09:00:00+06:00"},
                           reason="the SMS provider refused the number 12 times", attempts=12,
                           at="2027-03-02T09:00:00+06:00")
    message: MessageOut
    reason: str
    attempts: int
    at: datetime


class AuditRecord(BaseModel):
    model_config = example(id=3301, at="2027-03-01T09:00:12+06:00", kind="act", actor="provider:sms",
                           actor_role="provider", via=None, action="message.delivered",
                           subject="message:5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e01", outcome="ok",
                           details={"channel": "sms"}, request_id="c7d3e9f0-1a2b-4c5d-8e9f-0a1b2c3d4e5f")
    id: int
    at: str
    kind: str
    actor: str
    actor_role: str
    via: str | None
    action: str
    subject: str
    outcome: str
    details: dict[str, Any]
    request_id: str | None


@router.get("/messages", response_model=list[MessageOut], summary="Messages by parent, status, event")
def list_messages(service: Service, _: Access = allow(OPERATORS),
                  parent_id: Annotated[str | None, text_query(100)] = None,
                  status: PublicStatus | None = None,
                  event_type: Annotated[str | None, text_query(100)] = None,
                  kind: Annotated[str | None, text_query(40)] = None,
                  channel: Literal["sms", "email", "inapp"] | None = None,
                  limit: Limit = 100, offset: Offset = 0):
    rows = service.messages(parent_id=parent_id, status=status, event_type=event_type, kind=kind,
                            channel=channel, limit=limit, offset=offset)
    return [MessageOut.of(m) for m in rows]


@router.get("/messages/{message_id}", response_model=MessageOut, summary="One message")
def get_message(service: Service, message_id: MessageId, _: Access = allow(OPERATORS)):
    m = service.message(message_id)
    if m is None:
        raise DomainError("message_not_found", field="message_id", status_code=404)
    return MessageOut.of(m)


@router.post("/messages/{message_id}/retry", response_model=MessageOut,
             summary="Send a failed message again (not codes or links, not past its expiry)")
def retry(service: Service, message_id: MessageId, access: Access = allow(OPERATORS)):
    return MessageOut.of(service.send_again(message_id, access.principal))


@router.get("/dead-letters", response_model=list[DeadLetterOut], summary="Messages given up, with why")
def dead_letters(service: Service, _: Access = allow(OPERATORS), limit: Limit = 100, offset: Offset = 0):
    return [DeadLetterOut(message=MessageOut.of(m), reason=dl.reason, attempts=dl.attempts,
                          at=aware(dl.created_at)) for m, dl in service.dead_letters(limit, offset)]


@router.get("/audit", response_model=list[AuditRecord],
            summary="Who moved which message (oldest first; page with after_id)")
def audit_trail(service: Service, _: Access = allow(OPERATORS),
                message_id: Annotated[str | None, text_query(36)] = None,
                actor: Annotated[str | None, text_query(120)] = None,
                after_id: Annotated[int, Query(ge=0, le=2**62)] = 0, limit: Limit = 200):
    return service.audit_trail(message_id=message_id, actor=actor, after_id=after_id, limit=limit)
