"""The notifications service's data of closed applications, anonymised when
the retention policy says (kezek/retention.py): each message about the
application keeps its row (kind, channel, language, status, moments,
attempts) and loses its address, subject, text, the parameters it is
rendered again from, and its error; events parked
for it go. The parent's contacts (e-mail, phone) and the messages sent to
the parent alone (activation link, codes, sign-in warnings) go with the
parent's last application this service knows."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.retention import ANONYMISED, Closed, RetentionJob, ServiceRetention
from services.notifications.models import (Contact, DeadLetter, KnownApplication, Message, ParkedEvent, audit,
                                           retention_clock)

BLANK = dict(address="", address_hash="", subject=None, body="", params=None, last_error=None)


class NotificationsAnonymiser:
    fields = ("messages.address", "messages.subject", "messages.body", "messages.params", "messages.last_error",
              "dead_letters.reason", "parked_events (deleted)",
              "contacts.email, contacts.phone (with the parent's last application)",
              "messages to the parent alone (with the parent's last application)", "audit_trail.details")

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        ids = [c.application_id for c in closed]
        parents = {c.parent_id for c in closed if c.parent_id} | set(s.scalars(
            sa.select(KnownApplication.parent_id).where(KnownApplication.application_id.in_(ids))))
        done_parents = self._parents_done(s, parents, set(ids))
        about = sa.or_(Message.application_id.in_(ids),
                       sa.and_(Message.application_id.is_(None), Message.parent_id.in_(done_parents))
                       if done_parents else sa.false())
        message_ids = list(s.scalars(sa.select(Message.id).where(about)))
        n = {"messages": s.execute(sa.update(Message).where(Message.id.in_(message_ids)).values(**BLANK)).rowcount
             if message_ids else 0}
        n["dead_letters"] = s.execute(sa.update(DeadLetter).where(DeadLetter.message_id.in_(message_ids))
                                      .values(reason=ANONYMISED)).rowcount if message_ids else 0
        n["parked_events"] = s.execute(sa.delete(ParkedEvent).where(ParkedEvent.application_id.in_(ids))).rowcount
        n["contacts"] = s.execute(sa.update(Contact).where(Contact.parent_id.in_(done_parents))
                                  .values(email=None, phone=None)).rowcount if done_parents else 0
        return {k: v for k, v in n.items() if v}, [f"message:{m}" for m in message_ids]

    @staticmethod
    def _parents_done(s: Session, parents: set[str], now_done: set[str]) -> list[str]:
        """The parents every application of whom (that this service knows) is
        anonymised once these are."""
        return sorted(retention_clock.owners_done(s, KnownApplication.parent_id, KnownApplication.application_id,
                                                  parents, now_done))


RETENTION = ServiceRetention("notifications", retention_clock, audit, NotificationsAnonymiser())
retention_job = RETENTION.job


def build_retention(settings) -> RetentionJob:
    from services.notifications.runtime import build_service

    return retention_job(build_service(settings).sessions, settings.retention())
