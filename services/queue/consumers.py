"""Kafka consumers of the queue: the registration service's
application.submitted becomes a queue entry (one per child PIN); the
verification service's privilege_revoked moves the entry to the general
queue."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from services.queue.models import outbox
from services.queue.service import QueueService

SUBMITTED = "application.submitted.v1"
PRIVILEGE_REVOKED = "verification.privilege_revoked.v1"


def make_consumer(service: QueueService, bootstrap: str, topic_prefix: str = "kezek", **kafka) -> IdempotentConsumer:
    return IdempotentConsumer(name="queue.applications", topics=[f"{topic_prefix}.application"],
                              bootstrap=bootstrap, sessions=service.sessions, outbox=outbox,
                              handle=service.handle_submitted, types=[SUBMITTED], **kafka)


def make_revocation_consumer(service: QueueService, bootstrap: str, topic_prefix: str = "kezek",
                             **kafka) -> IdempotentConsumer:
    # A consumer group of its own: a slow verification topic never holds up
    # new applications, and each keeps its own offsets.
    return IdempotentConsumer(name="queue.verification", topics=[f"{topic_prefix}.verification"],
                              bootstrap=bootstrap, sessions=service.sessions, outbox=outbox,
                              handle=service.handle_privilege_revoked, types=[PRIVILEGE_REVOKED], **kafka)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.queue.runtime import build_service

    service = build_service(settings)
    return [make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            make_revocation_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
