"""Reading: the operators' views (messages, dead letters, the audit
trail) and the parent's inbox, with its one write, the read mark."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import unit_of_work
from kezek.logging import get_logger
from kezek.trust import Principal
from services.notifications import domain as d
from services.notifications.models import Contact, DeadLetter, KnownApplication, Message, audit
from services.notifications.usecases import moves
from services.notifications.usecases.common import aware

log = get_logger(__name__)


class Reading:
    """Part of NotificationService (service.py): what it needs from it."""

    sessions: sessionmaker[Session]
    clock: Any
    renderer: Any
    cabinet_url: str

    def messages(self, *, parent_id: str | None = None, status: str | None = None,
                 event_type: str | None = None, kind: str | None = None, channel: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[Message]:
        query = sa.select(Message)
        if parent_id:
            query = query.where(Message.parent_id == parent_id)
        if status:
            # `sending` is a lease, not a state anyone outside should see.
            wanted = [status, d.Status.SENDING.value] if status == d.Status.QUEUED.value else [status]
            query = query.where(Message.status.in_(wanted))
        if event_type:
            query = query.where(Message.source_event_type == event_type)
        if kind:
            query = query.where(Message.kind == kind)
        if channel:
            query = query.where(Message.channel == channel)
        query = query.order_by(Message.created_at.desc(), Message.id).limit(limit).offset(offset)
        with self.sessions() as s:
            return list(s.scalars(query))

    def message(self, mid: str) -> Message | None:
        with self.sessions() as s:
            return s.get(Message, mid)

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[tuple[Message, DeadLetter]]:
        with self.sessions() as s:
            return list(s.execute(sa.select(Message, DeadLetter).join(DeadLetter, DeadLetter.message_id == Message.id)
                                  .order_by(DeadLetter.created_at.desc(), Message.id)
                                  .limit(limit).offset(offset)))

    def audit_trail(self, *, message_id: str | None = None, actor: str | None = None, after_id: int = 0,
                    limit: int = 200) -> list[dict]:
        with self.sessions() as s:
            return audit.trail(s, subject=f"message:{message_id}" if message_id else None, actor=actor,
                               after_id=after_id, limit=limit)

    def in_language(self, message: Message, lang: str | None) -> tuple[str | None, str]:
        """An in-app message's title and text in `lang`: rendered again from
        its kind and stored parameters (the parent reads the cabinet in
        another language than the one it was sent in), else as stored."""
        if not lang or lang == message.locale or not message.params or lang not in d.LOCALES:
            return message.subject, message.body
        try:
            again = self.renderer.render_again(d.Kind(message.kind), lang, message.params, self.cabinet_url)
        except Exception as exc:   # a message written before a template changed: as it was sent
            log.warning("notifications.render_again_failed", message_id=message.id, lang=lang, error=repr(exc))
            return message.subject, message.body
        return again.subject, again.body

    def inbox(self, parent_id: str, *, unread_only: bool = False, limit: int = 50) -> list[Message]:
        query = sa.select(Message).where(Message.channel == d.Channel.INAPP.value, Message.parent_id == parent_id,
                                         Message.status == d.Status.DELIVERED.value)
        if unread_only:
            query = query.where(Message.read_at.is_(None))
        with self.sessions() as s:
            return list(s.scalars(query.order_by(Message.created_at.desc(), Message.id).limit(limit)))

    def family_copy(self, parent_id: str) -> dict:
        """Everything this service holds about the parent's family: the
        contacts it writes to, and every message about the family on every
        channel (codes and links stay hidden: they were removed once sent)."""
        with self.sessions() as s:
            apps = list(s.scalars(sa.select(KnownApplication.application_id)
                                  .where(KnownApplication.parent_id == parent_id)))
            rows = s.scalars(sa.select(Message).where(sa.or_(Message.parent_id == parent_id,
                                                             Message.application_id.in_(apps)))
                             .order_by(Message.created_at, Message.id)).all()
            contact = s.get(Contact, parent_id)

            def when(t):
                return aware(t).isoformat() if t else None
            return {
                "contacts": {"email": contact.email, "phone": contact.phone, "locale": contact.locale}
                if contact else None,
                "messages": [{"id": m.id, "kind": m.kind, "channel": m.channel, "address": m.address,
                              "application_id": m.application_id, "referral_id": m.referral_id, "locale": m.locale,
                              "subject": m.subject, "text": m.body, "status": m.status,
                              "created_at": when(m.created_at), "sent_at": when(m.sent_at),
                              "delivered_at": when(m.delivered_at), "failed_at": when(m.failed_at),
                              "read_at": when(m.read_at)} for m in rows],
            }

    def unread(self, parent_id: str) -> int:
        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(Message).where(
                Message.channel == d.Channel.INAPP.value, Message.parent_id == parent_id,
                Message.status == d.Status.DELIVERED.value, Message.read_at.is_(None)))

    def mark_read(self, parent_id: str, mid: str, who: Principal) -> bool:
        """False if the message is not in this parent's inbox."""
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m is None or m.parent_id != parent_id or m.channel != d.Channel.INAPP.value:
                return False
            if m.read_at is None:
                m.read_at = self.clock()
                moves.audited(s, who, "notification.read", m)
            return True
