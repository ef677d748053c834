"""The notifications side of the ReferralWorkflow: the `notify_parent`
activity (workflows/contracts.py NOTIFY_PARENT).

One path per kind (domain.ACTIVITY_KINDS): the activity makes messages only
for kinds that never travel as Kafka facts (the deadline reminder); kinds the
queue publishes as facts (referral.issued.v1, referral.expired.v1, ...) are
told by the consumer, and the activity acknowledges them without a message.
Temporal retries activities: the idempotency key is claimed in
processed_events in the same transaction as the messages, and the message ids
derive from it, so a retry makes nothing new.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kezek.events import InvalidEvent, UnknownEventType
from services.notifications.service import NotificationService
from workflows import contracts as c

NOT_DELIVERABLE = "NotificationRefused"


class NotificationActivities:
    def __init__(self, service: NotificationService):
        self.service = service

    def all(self) -> list[Callable]:
        return [self.notify_parent]

    @activity.defn(name=c.NOTIFY_PARENT)
    async def notify_parent(self, call: c.NotifyParent) -> bool:
        """True if messages were made (or parked until the parent is known)."""
        try:
            return await asyncio.to_thread(
                self.service.notify_parent, key=call.idempotency_key, kind=call.kind,
                referral_id=call.referral_id, application_id=call.application_id,
                parent_id=call.parent_id, at=call.at, data=dict(call.data))
        except (InvalidEvent, UnknownEventType, ValueError) as exc:
            # A payload that cannot make a message never will: retrying only delays the workflow.
            raise ApplicationError(str(exc), type=NOT_DELIVERABLE, non_retryable=True) from exc


def build_activities(settings) -> list[Callable]:
    from services.notifications.runtime import build_service

    return NotificationActivities(build_service(settings)).all()
