"""The notifications consumer: the facts a parent must hear about, from the
registration, application, account and referral topics."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.events import Event, aggregate_of
from kezek.retention import CLOSED, ERASURE_GRANTED, RetentionJob, with_retention
from services.notifications.models import outbox
from services.notifications.service import CONSUMED_TYPES, NotificationService

CONSUMER_NAME = "notifications"


def topics(prefix: str) -> list[str]:
    return sorted({f"{prefix}.{aggregate_of(t)}" for t in CONSUMED_TYPES})


def read_first(prefix: str) -> list[str]:
    """The topics whose facts the consumer takes before the applications':
    a referral, an e-mail code, an activation link, a voucher decision are
    for the parent at once. The application topic carries a distribution
    day's position events (155,000 at 200,000 children, each news only on
    entering the top ten): read in turn with them, the day's referral facts
    waited behind tens of thousands of positions (all 10,000 SMS at 1,261.6 s
    at 200,000 children). Parking keeps the order free: an event that comes
    before its application's received event waits for it, as before."""
    return [t for t in topics(prefix) if t != f"{prefix}.application"]


# A rebalance waits up to the members' max poll interval for a member that
# is gone (a crashed process, a broker restarted under it): 5 minutes by
# default. Batches of 200 keep a poll well under the shorter limit: position
# events (most of a distribution day's) are read for a batch at once
# (NotificationService.prepare), a few milliseconds each.
KAFKA_CONFIG = dict(max_poll_records=200, max_poll_interval_ms=30_000)


def make_consumer(service: NotificationService, bootstrap: str, prefix: str = "kezek", *,
                  retention: RetentionJob | None = None, **kafka_config) -> IdempotentConsumer:
    """The messages' facts; and, with `retention`, the closing of an
    application (this service's retention clock) and a granted erasure."""
    types = CONSUMED_TYPES | ({CLOSED, ERASURE_GRANTED} if retention is not None else set())
    return IdempotentConsumer(name=CONSUMER_NAME, topics=topics(prefix), bootstrap=bootstrap,
                              sessions=service.sessions, outbox=outbox, handle=handler(service, retention),
                              types=types, prepare=service.prepare, finish=service.finish,
                              first=read_first(prefix), **{**KAFKA_CONFIG, **kafka_config})


def handler(service: NotificationService, retention: RetentionJob | None):
    """The service's handler, or the retention job's; the events parked so
    far in the batch are written before the latter (it deletes an
    application's parked events)."""
    routed = with_retention(service.handle, retention)

    def handle(session, event: Event) -> None:
        if event.type in (CLOSED, ERASURE_GRANTED):
            service.finish(session)
        routed(session, event)
    return handle


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.notifications.retention import retention_job
    from services.notifications.runtime import build_service

    service = build_service(settings)
    return [make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix,
                          retention=retention_job(service.sessions, settings.retention()))]
