"""The notifications service's use cases, as one object the API, the
consumer, the activity and the dispatchers share. Each use case runs in one
transaction that also writes its notification.* facts to the outbox and its
rows to the audit trail (usecases/moves.py).

- usecases/consuming.py: `handle(session, event)`, the Kafka consumer's
  handler (inside the consumer's transaction, with the event id already
  claimed), and `notify_parent(...)`, the workflow's activity (only the
  kinds no Kafka fact tells, `domain.ACTIVITY_KINDS`, once per key).
- usecases/dispatching.py: `claim_due` / `record_attempt` (`record_attempts`
  for a round of sends, in one transaction) /
  `record_receipt`, the dispatcher's steps around a send, and `send_again`,
  an operator's retry.
- usecases/reading.py: the operators' views, the parent's inbox and read mark.

Every move of a message's status is audited with the verified actor: the
service itself (`SYSTEM`) when it queues, sends, retries or gives up, the SMS
provider for a signed receipt, the parent for a read mark, the operator for
a retry.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from sqlalchemy.orm import Session, sessionmaker

from services.notifications import domain as d
from services.notifications import refusals  # noqa: F401  (registers the English text of the service's codes)
from services.notifications.rendering import Renderer
from services.notifications.usecases.common import (  # noqa: F401  (the names other modules import from here)
    SMS_PROVIDER, SYSTEM, Attempt, Outgoing, aware, message_id, utcnow,
)
from services.notifications.usecases.consuming import (  # noqa: F401
    ACTIVITY_CONSUMER, CONSUMED_TYPES, CONTACT_EVENTS, Consuming,
)
from services.notifications.usecases.dispatching import Dispatching, ReceiptReplayed  # noqa: F401
from services.notifications.usecases.reading import Reading


class NotificationService(Consuming, Dispatching, Reading):
    def __init__(self, sessions: sessionmaker[Session], *, tz: tzinfo, cabinet_url: str,
                 renderer: Renderer | None = None, clock: Callable[[], datetime] = utcnow,
                 limits: tuple[d.RateLimit, ...] = d.SMS_LIMITS, retry: d.RetryPolicy = d.DEFAULT_RETRY,
                 urgent_retry: d.RetryPolicy = d.URGENT_RETRY):
        self.sessions = sessions
        self.retry, self.urgent_retry = retry, urgent_retry
        self.tz = tz
        self.cabinet_url = cabinet_url
        self.renderer = renderer or Renderer(tz)
        self.clock = clock
        self.limits = limits
        self.signatures_forgotten_at: int | None = None    # (Dispatching._forgetting_due)
