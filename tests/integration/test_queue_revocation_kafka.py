"""The queue consumes verification.privilege_revoked.v1 from the real Kafka
broker (the verification topic) and moves the child to the general queue,
once, on PostgreSQL."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.infra.procs import wait_until
from kezek.migrations import upgrade
from kezek.relay import make_producer
from services.queue.consumers import PRIVILEGE_REVOKED, make_revocation_consumer
from services.queue.models import outbox
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration


def handled(service: Queue, event_id: str) -> bool:
    with service.sessions() as s:
        return s.execute(sa.select(outbox.processed.c.event_id)
                         .where(outbox.processed.c.event_id == event_id)).first() is not None


def test_privilege_revoked_on_kafka_moves_the_queue_entry_to_the_general_queue_once(pg_url, kafka_bootstrap):
    url = pg_url("queue_revocation")
    upgrade("queue", url)
    engine = make_engine(url)
    service = Queue(make_session_factory(engine), clock=lambda: datetime(2027, 3, 1, 4, tzinfo=UTC))
    service.kindergartens.save({"id": "sun", "name": "Sun", "district": "Leninsky", "languages": ["ru"]},
                              actor="admin:1")
    service.entries.join(JoinQueue(application_id="a1", pin="21506202400011", surname="Asanov", name="Aibek",
                                 category="extraordinary", language="ru", preferences=("sun",),
                                 queue_date=datetime(2026, 1, 10, 4, tzinfo=UTC)), actor="parent:1")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [f"{prefix}.verification"])
    event = new_event(PRIVILEGE_REVOKED, "a1", {
        "case_id": "case-1", "application_id": "a1", "from_category": "extraordinary", "to_category": "general",
        "reason": "not a conscript", "revoked_at": "2027-03-01T12:00:00+06:00", "referral_id": None,
        "referral_rejected": False, "revoked_by": "staff-1"}, source="verification").to_json()
    producer = make_producer(kafka_bootstrap)
    # Unknown ids and repeats travel on the same topic: neither may stop the consumer.
    def stranger(case):
        return new_event(PRIVILEGE_REVOKED, "zz", {
            "case_id": case, "application_id": "zz", "from_category": "privileged", "to_category": "general",
            "reason": "x", "revoked_at": "2027-03-01T12:00:00+06:00", "referral_rejected": False},
            source="verification")
    last = stranger("case-3")
    # One key, one partition: the last message is handled after the others.
    for value in (stranger("case-2").to_json(), event, event, last.to_json()):
        producer.send(f"{prefix}.verification", key="a1", value=value)
    producer.flush()
    producer.close()

    consumer = make_revocation_consumer(service, kafka_bootstrap, prefix, group_id=f"queue-{prefix}")
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: service.views.application("a1")["category"] == "general", 60, "the revocation applied")
        app = service.views.application("a1")
        assert app["queue_date"] == datetime(2026, 1, 10, 4, tzinfo=UTC)
        wait_until(lambda: handled(service, last.id), 60, "every message handled")
    finally:
        stop.set()
        thread.join(10)
        engine.dispose()
    moves = [e for e in service.audit.trail("application:a1") if e["action"] == "application.returned_to_general_queue"]
    assert len(moves) == 1
