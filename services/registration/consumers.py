"""What registration hears from the queue: an application removed or
refused there stops holding its child's PIN here."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from services.registration.models import outbox

CONSUMER_NAME = "registration"
CONSUMED_TYPES = ("application.removed.v1", "application.refused.v1")


def make_consumer(service, bootstrap: str, prefix: str = "kezek", **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.application"], bootstrap=bootstrap,
                              sessions=service.sessions, outbox=outbox, handle=service.handle_queue_event,
                              types=CONSUMED_TYPES, **kafka_config)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.registration.bootstrap import build

    service = build(settings)
    return [make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
