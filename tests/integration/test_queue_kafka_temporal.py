"""The real queue service with real PostgreSQL, Kafka and Temporal: an
application.submitted event from Kafka becomes a queue entry, published
places are allocated by the allocator loop, which announces each referral
(its referral.issued fact) before its workflow starts on Temporal; the
workflow, started as announced, records no second one and calls the queue's
activities, the parent cancels through the workflow, the place goes to the
next child, and every fact reaches Kafka through the outbox."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer
from temporalio import activity

from kezek.db import make_engine, make_session_factory
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay, make_producer, wait_until_relayed
from services.queue.activities import QueueActivities, WorkflowStarter
from services.queue.consumers import make_consumer
from services.queue.jobs import Allocator
from services.queue.models import outbox
from services.queue.usecases import Queue
from workflows import contracts as c
from workflows.worker import build_worker, connect

pytestmark = pytest.mark.integration


@activity.defn(name=c.NOTIFY_PARENT)
async def notify_parent(call: c.NotifyParent) -> None:
    """Messages are the notifications service's business, not this test's."""


def submitted(app_id: str, pin: str, queue_date: str, preferences: list[str]) -> str:
    return new_event("application.submitted.v1", f"application:{app_id}", {
        "application_id": app_id, "parent_id": f"parent-{app_id}", "country": "KG", "child_pin": pin,
        "child_birth_date": f"{pin[5:9]}-{pin[3:5]}-{pin[1:3]}", "child_surname": "Asanov",
        "child_name": "Aibek", "category": "general", "queue_date": queue_date, "language": "ru",
        "preferences": preferences, "locale": "ru"}, source="registration").to_json()


async def until(check, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_queue_service_end_to_end_with_kafka_and_temporal(pg_url, kafka_bootstrap, temporal_dev,
                                                                temporal_namespace):
    url = pg_url("queue_e2e")
    upgrade("queue", url)
    engine = make_engine(url)
    service = Queue(make_session_factory(engine), clock=lambda: datetime.now(UTC))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [f"{prefix}.application", f"{prefix}.referral", f"{prefix}.place"])
    for kid in ("sun", "moon"):
        service.kindergartens.save({"id": kid, "name": kid.title(), "district": "Leninsky", "address": "Street 1",
                                   "languages": ["ru"]}, actor="admin:1")

    # Registration's facts arrive on Kafka; the queue consumes them.
    producer = make_producer(kafka_bootstrap)
    producer.send(f"{prefix}.application", key="a1",
                  value=submitted("a1", "21005202300011", "2025-01-10T10:00:00+06:00", ["sun", "moon"]))
    producer.send(f"{prefix}.application", key="a2",
                  value=submitted("a2", "11005202300012", "2025-02-10T10:00:00+06:00", ["sun"]))
    producer.flush()
    producer.close()
    consumer = make_consumer(service, kafka_bootstrap, prefix, group_id=f"queue-{prefix}")
    stop = threading.Event()
    threads = [threading.Thread(target=consumer.run, args=(stop,), daemon=True)]
    allocator = Allocator(service, poll=0.1)
    service.on_allocation_requested = allocator.wake.set
    threads.append(threading.Thread(target=allocator, args=(stop,), daemon=True))
    relay = OutboxRelay(service.sessions, outbox, kafka_bootstrap, topic_prefix=prefix)
    for t in threads:
        t.start()

    client = await connect(temporal_dev.address, temporal_namespace)
    task_queue = f"referrals-{prefix}"
    worker = build_worker(client, [*QueueActivities(service).all(), notify_parent], task_queue=task_queue)
    starter = WorkflowStarter(service, address=temporal_dev.address, namespace=temporal_namespace,
                              task_queue=task_queue)
    try:
        async with worker:
            await until(lambda: len(service.audit.trail()) >= 4, what="both applications consumed")
            assert service.views.application("a1")["status"] == "queued"

            # A kindergarten publishes a place: the allocator gives it to a1 at once.
            await asyncio.to_thread(service.places.publish, "sun", 2023, "ru", 1, actor="kindergarten:sun")
            await until(lambda: service.views.application("a1")["status"] == "referred", what="a1 referred")
            assert service.views.application("a2")["status"] == "queued"
            # Announced by the allocation, before any workflow runs.
            ref_id = service.views.application("a1")["referral"]["id"]
            assert issued_subjects(service) == [f"referral:{ref_id}"]

            # The referral's workflow starts on Temporal, told it was announced.
            assert await starter.start_pending(client) == 1
            handle = client.get_workflow_handle(c.workflow_id(str(ref_id)))
            status = await handle.query(c.STATUS, result_type=c.ReferralStatus)   # after its first task
            assert status.state == c.ReferralState.AWAITING_ENROLMENT
            started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
            assert json.loads(started.input.payloads[0].data)["announced"] is True
            assert issued_subjects(service) == [f"referral:{ref_id}"], "the workflow must not record it again"

            # The parent gives the place up: the workflow returns it through the
            # queue's activity, and the allocator hands it to a2.
            result = await handle.execute_update(c.CANCEL, c.CancelReferral(actor="parent:a1"), result_type=c.ActResult)
            assert result.event == "referral.cancelled"
            a1 = service.views.application("a1")
            assert a1["status"] == "queued" and a1["preferences"] == ["moon"]
            await until(lambda: service.views.application("a2")["status"] == "referred", what="a2 referred")
            assert await starter.start_pending(client) == 1
            ref2 = service.views.application("a2")["referral"]["id"]
            await client.get_workflow_handle(c.workflow_id(str(ref2))).query(c.STATUS, result_type=c.ReferralStatus)
            assert issued_subjects(service) == [f"referral:{ref_id}", f"referral:{ref2}"]
            assert service.audit.check_register() == []
            assert all(r["matches"] for r in service.audit.replay())

            # Every fact reached Kafka through the outbox.
            await asyncio.to_thread(wait_until_relayed, relay)
            seen = await asyncio.to_thread(read_types, kafka_bootstrap, prefix, {
                "application.queued.v1", "place.published.v1", "referral.issued.v1", "referral.cancelled.v1",
                "place.returned.v1"})
            assert {"application.queued.v1", "place.published.v1", "referral.issued.v1",
                    "referral.cancelled.v1", "place.returned.v1"} <= seen
            await handle.result()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        relay.close()
        engine.dispose()


def outbox_types(service: Queue) -> set[str]:
    with service.sessions() as s:
        return set(s.execute(sa.select(outbox.table.c.type)).scalars())


def issued_subjects(service: Queue) -> list[str]:
    """The referral.issued facts in the outbox, one subject each."""
    with service.sessions() as s:
        return list(s.execute(sa.select(outbox.table.c.subject).where(outbox.table.c.type == "referral.issued.v1")
                              .order_by(outbox.table.c.seq)).scalars())


def read_types(bootstrap: str, prefix: str, wanted: set[str], timeout: float = 30) -> set[str]:
    reader = KafkaConsumer(f"{prefix}.application", f"{prefix}.referral", f"{prefix}.place",
                           bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                           consumer_timeout_ms=1000)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for record in reader:
                seen.add(json.loads(record.value)["type"])
    finally:
        reader.close()
    return seen
