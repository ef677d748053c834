"""Kafka consumers of the queue: the registration service's
application.submitted becomes a queue entry (one per child PIN)."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from services.queue.models import outbox
from services.queue.service import QueueService

SUBMITTED = "application.submitted.v1"


def make_consumer(service: QueueService, bootstrap: str, topic_prefix: str = "kezek", **kafka) -> IdempotentConsumer:
    return IdempotentConsumer(name="queue.applications", topics=[f"{topic_prefix}.application"],
                              bootstrap=bootstrap, sessions=service.sessions, outbox=outbox,
                              handle=service.handle_submitted, types=[SUBMITTED], **kafka)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.queue.runtime import build_service

    return [make_consumer(build_service(settings), settings.kafka_bootstrap, settings.kafka_topic_prefix)]
