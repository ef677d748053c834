"""The parent's inbox, for the cabinet: the gateway calls as the parent it
signed in (a service token with `parent:<account>`), and a parent reaches
only their own. Another family's inbox or message is simply not found."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from kezek.contracts.family import NotificationsCopy
from kezek.openapi import example
from kezek.trust import FAMILY, Access, allow, parent
from kezek.web import DomainError
from services.notifications.api.common import PREFIX, MessageId, ParentId, Service
from services.notifications.service import aware

router = APIRouter(prefix=PREFIX, tags=["inbox"])


class InboxItem(BaseModel):
    model_config = example(id="5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e02", kind="referral_issued", title="Жолдомо",
                           text="Айбек «Ак-Бата» бала бакчасына жолдомо алды.",
                           created_at="2027-03-01T09:00:06+06:00", read=False)
    id: str
    kind: str
    title: str | None
    text: str
    created_at: datetime
    read: bool


class Inbox(BaseModel):
    model_config = example(parent_id="acc-9c1e", unread=1,
                           messages=[{"id": "5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e02", "kind": "referral_issued", "title": "Жолдомо", "text": "Айбек «Ак-Бата» бала бакчасына жолдомо алды.", "created_at": "2027-03-01T09:00:06+06:00", "read": False}])
    parent_id: str
    unread: int
    messages: list[InboxItem]


@router.get("/inbox/{parent_id}", response_model=Inbox, summary="The parent's in-app messages")
def inbox(service: Service, parent_id: ParentId, access: Access = allow(parent()), unread_only: bool = False,
          limit: Annotated[int, Query(ge=1, le=200)] = 50,
          lang: Annotated[str | None, Query(pattern="^[a-z]{2}$",
                                            description="the reader's language: messages are rendered in it")] = None):
    access.check(family=parent_id)
    rows = service.inbox(parent_id, unread_only=unread_only, limit=limit)
    items = []
    for m in rows:
        title, text = service.in_language(m, lang)
        items.append(InboxItem(id=m.id, kind=m.kind, title=title, text=text, created_at=aware(m.created_at),
                               read=m.read_at is not None))
    return Inbox(parent_id=parent_id, unread=service.unread(parent_id), messages=items)


@router.post("/inbox/{parent_id}/{message_id}/read", status_code=204, summary="The parent has read a message")
def mark_read(service: Service, parent_id: ParentId, message_id: MessageId, access: Access = allow(parent())):
    access.check(family=parent_id)
    if not service.mark_read(access.within(FAMILY), message_id, who=access.principal):
        raise DomainError("message_not_found", field="message_id", status_code=404)


@router.get("/families/{parent_id}/copy", summary="Everything this service holds about the parent's family: "
                                                  "contacts and every message on every channel",
            response_model=NotificationsCopy, response_model_exclude_unset=True)
def family_copy(service: Service, parent_id: ParentId, access: Access = allow(parent())):
    access.check(family=parent_id)
    return service.family_copy(parent_id)
