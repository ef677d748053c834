"""The notifications consumer on a real Kafka broker and PostgreSQL: the
facts a parent must hear at once do not wait behind a distribution day's
position events (services/notifications/consumers.py: read_first)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.migrations import upgrade
from kezek.relay import make_producer
from services.notifications.consumers import make_consumer, topics
from services.notifications.models import Message, outbox
from services.notifications.service import NotificationService

pytestmark = pytest.mark.integration
APPLICATIONS = 50
POSITIONS = 3000
POLL = 100
REFERRAL_FACT = str(uuid.uuid4())


def midday_zone() -> ZoneInfo:
    """A zone where it is about noon: quiet hours do not hold the SMS."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12
    return ZoneInfo(f"Etc/GMT{-offset:+d}")


@pytest.fixture
def service(pg_url):
    url = pg_url("notifications_first")
    upgrade("notifications", url)
    engine = make_engine(url)
    yield NotificationService(make_session_factory(engine), tz=midday_zone(),
                              cabinet_url="https://kezek.example/cabinet")
    engine.dispose()


def positions_consumed(service) -> int:
    claims = outbox.processed
    with service.sessions() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(claims)
                        .where(claims.c.consumer == "notifications", claims.c.event_id != REFERRAL_FACT))


def referral_sms(service, referral_id: str) -> int:
    with service.sessions() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(Message)
                        .where(Message.referral_id == referral_id, Message.channel == "sms"))


def test_a_referral_fact_is_told_without_waiting_for_the_position_events_queued_before_it(kafka_bootstrap,
                                                                                            service):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, topics(prefix), partitions=4)
    # Families known from before the day (the old portal's children).
    for i in range(APPLICATIONS):
        with unit_of_work(service.sessions) as s:
            service.handle(s, new_event("application.received.v1", f"application:a{i}", {
                "application_id": f"a{i}", "parent_id": f"p{i}", "locale": "ru", "imported": True,
                "phone": f"+99670012{i:04d}", "email": f"p{i}@example.kg"}, source="registration"))
    # The day: thousands of position events (none of them news), on the topic
    # before the consumer reads it.
    producer = make_producer(kafka_bootstrap)
    for n in range(POSITIONS):
        app = f"a{n % APPLICATIONS}"
        event = new_event("application.position_changed.v1", f"application:{app}", {
            "application_id": app, "position": 100 + n, "previous_position": 101 + n},
            source="queue")
        producer.send(f"{prefix}.application", key=app, value=event.to_json())
    producer.flush()

    consumer = make_consumer(service, kafka_bootstrap, prefix, group_id=f"n-{prefix}", max_poll_records=POLL)
    try:
        # The consumer has fetched the position events and begun on them ...
        for _ in range(60):
            if consumer.poll_once(timeout_ms=500):
                break
        assert 0 < positions_consumed(service) < POSITIONS
        # ... when the referral is issued.
        producer.send(f"{prefix}.referral", key="r1", value=new_event("referral.issued.v1", "referral:r1", {
            "referral_id": "r1", "application_id": "a1", "kindergarten_id": "k1", "kindergarten_name": "Күн",
            "deadline": "2027-03-08T18:00:00Z", "needs_confirmation": False}, source="queue",
            event_id=REFERRAL_FACT).to_json())
        producer.flush()
        consumed_when_told = None
        for _ in range(200):
            consumer.poll_once(timeout_ms=500)
            if referral_sms(service, "r1"):
                consumed_when_told = positions_consumed(service)
                break
    finally:
        consumer.close()
        producer.close()

    assert consumed_when_told is not None, "the referral's SMS is made"
    assert consumed_when_told < POSITIONS, "made before the position events queued before it are all consumed"
