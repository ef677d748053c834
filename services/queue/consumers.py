"""Kafka consumers of the queue: the registration service's
application.submitted becomes a queue entry (one per child PIN); the
verification service's privilege_revoked moves the entry to the general
queue."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from services.queue.models import outbox
from services.queue.usecases import Queue

SUBMITTED = "application.submitted.v1"
PRIVILEGE_REVOKED = "verification.privilege_revoked.v1"


def make_consumer(queue: Queue, bootstrap: str, topic_prefix: str = "kezek", **kafka) -> IdempotentConsumer:
    return IdempotentConsumer(name="queue.applications", topics=[f"{topic_prefix}.application"],
                              bootstrap=bootstrap, sessions=queue.sessions, outbox=outbox,
                              handle=queue.entries.join_submitted, types=[SUBMITTED], **kafka)


def make_revocation_consumer(queue: Queue, bootstrap: str, topic_prefix: str = "kezek",
                             **kafka) -> IdempotentConsumer:
    # A consumer group of its own: a slow verification topic never holds up
    # new applications, and each keeps its own offsets.
    return IdempotentConsumer(name="queue.verification", topics=[f"{topic_prefix}.verification"],
                              bootstrap=bootstrap, sessions=queue.sessions, outbox=outbox,
                              handle=queue.entries.privilege_revoked, types=[PRIVILEGE_REVOKED], **kafka)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.queue.runtime import build_queue

    queue = build_queue(settings)
    return [make_consumer(queue, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            make_revocation_consumer(queue, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
