"""What registration hears from the queue: an application removed or
refused there, or whose enrolled child left its kindergarten, stops holding
its child's PIN here; an application that
closed starts registration's own retention clock (kezek/retention.py), and
a family's granted erasure anonymises registration's data of it at once."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.retention import CLOSED, ERASURE_GRANTED, RetentionJob, with_retention
from services.registration.models import outbox

CONSUMER_NAME = "registration"
CONSUMED_TYPES = ("application.removed.v1", "application.refused.v1", "application.left.v1", CLOSED, ERASURE_GRANTED)


def make_consumer(service, bootstrap: str, prefix: str = "kezek", *, retention: RetentionJob | None = None,
                  **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.application"], bootstrap=bootstrap,
                              sessions=service.sessions, outbox=outbox, handle=with_retention(service.handle_queue_event, retention),
                              types=CONSUMED_TYPES, **kafka_config)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.registration.bootstrap import build
    from services.registration.retention import retention_job

    service = build(settings)
    return [make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix,
                          retention=retention_job(service.sessions, settings.retention()))]
