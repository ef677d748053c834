"""The public stream fed by the real queue service: its use cases write
their facts to the queue's outbox, the relay puts them on the internal
topics, and the projector turns them into public events with no personal
data, on real PostgreSQL and Kafka."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory
from kezek.events import Event, new_event
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay, wait_until_relayed
from kezek.settings import Settings
from services.gateway.public.models import public_outbox
from services.gateway.public.projector import make_consumer
from services.gateway.public.runtime import PublicRuntime
from services.gateway.public.tools import drive, publish, read_topic
from services.queue.models import Referral, outbox as queue_outbox
from services.queue.store.times import aware
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration
DISTRICT = "41711100000000"
# Children of kindergarten age whatever the day the test runs (a child of
# school age is given no place).
BORN_A, BORN_B = date(date.today().year - 4, 5, 15), date(date.today().year - 4, 3, 20)
PIN_A, PIN_B = f"2{BORN_A:%d%m%Y}12345", f"1{BORN_B:%d%m%Y}54321"
PERSONAL = [PIN_A, PIN_B, "Асанов", "Айбек", "Садырова", "Айпери", "Балдар бакчасы", "Токтогула"]


def test_queue_facts_reach_the_public_topic_pseudonymised(pg_url, kafka_bootstrap):
    settings = Settings(env="test", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=f"q{uuid.uuid4().hex[:8]}",
                        pseudonym_key="queue-feed-key")
    queue_url, gateway_url = pg_url("queue"), pg_url("gateway")
    upgrade("queue", queue_url)
    upgrade("gateway", gateway_url)
    queue_engine = make_engine(queue_url)
    queue = Queue(make_session_factory(queue_engine), country="KG")
    rt = PublicRuntime(settings, database_url=gateway_url)
    rt.projector.directory = lambda kid: queue.kindergartens.get(kid)["district"]

    queue.kindergartens.save({"id": "kg-1", "name": "Балдар бакчасы №1", "district": DISTRICT,
                             "address": "ул. Токтогула 1", "languages": ["ky"]}, actor="test")
    a = queue.views.application(queue.entries.join(JoinQueue(pin=PIN_A, surname="Асанов", name="Айбек", category="privileged", language="ky",
                                   preferences=("kg-1",), application_id="app-a", parent_id="parent-a",
                                   queue_date=datetime(2021, 1, 5, 4, tzinfo=UTC)), actor="test"))
    queue.entries.join(JoinQueue(pin=PIN_B, surname="Садырова", name="Айпери", category="general", language="ky",
                               preferences=("kg-1",), application_id="app-b", parent_id="parent-b",
                               queue_date=datetime(2021, 2, 5, 4, tzinfo=UTC)), actor="test")
    queue.places.publish("kg-1", BORN_A.year, "ky", 1, actor="test")
    run = queue.allocation.run()
    (issued,) = run.issued
    assert issued.application_id == a["id"]
    # The allocation announced it (referral.issued.v1 with its first deadline).
    with queue.sessions() as s:
        deadline = aware(s.scalars(sa.select(Referral.deadline).where(Referral.id == issued.referral_id)).one())
    relay = OutboxRelay(make_session_factory(queue_engine), queue_outbox, kafka_bootstrap,
                        topic_prefix=settings.kafka_topic_prefix)
    wait_until_relayed(relay)
    relay.close()
    # The registration's event for child A (the only one with the PIN).
    submitted = new_event("application.submitted.v1", "app-a", {
        "application_id": "app-a", "parent_id": "parent-a", "country": "KG", "child_pin": PIN_A,
        "child_birth_date": BORN_A.isoformat(), "child_surname": "Асанов", "child_name": "Айбек", "category": "privileged",
        "queue_date": "2021-01-05T10:00:00+06:00", "language": "ky", "preferences": ["kg-1"],
        "district": DISTRICT, "locale": "ky"}, source="registration")
    publish(kafka_bootstrap, settings.topic("application"), [submitted])

    def published() -> int:
        with rt.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(public_outbox.table))

    consumer = make_consumer(rt.sessions, rt.projector, kafka_bootstrap, rt.internal_topics)
    try:
        drive(consumer.poll_once, lambda: published() >= 3, timeout=60)
        consumer.poll_once(timeout_ms=1000)
    finally:
        consumer.close()
    # Child B came without a registration event (as an import does): after
    # the grace period it is published under a ref of its own entry.
    with rt.sessions() as s, s.begin():
        rt.projector.sweep(s, now=datetime.now(UTC) + rt.projector.park_grace)
    public_relay = rt.relay()
    wait_until_relayed(public_relay)
    public_relay.close()

    records = read_topic(kafka_bootstrap, rt.settings.public_topic, expect=4)
    events = [Event.from_json(r.value) for r in records]
    by_type: dict[str, list[Event]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e)
    for r in records:
        raw = r.value.decode()
        assert not [v for v in PERSONAL if v in raw], raw
    ref_a = rt.projector.names.child("KG", PIN_A)
    queued = {e.data["child_ref"]: e.data for e in by_type["public.application.queued.v1"]}
    assert set(queued) == {ref_a, rt.projector.names.entry("app-b")}
    assert queued[ref_a]["district"] == DISTRICT and queued[ref_a]["category"] == "privileged"
    (place,) = by_type["public.place.published.v1"]
    assert place.data["district"] == DISTRICT and place.data["count"] == 1
    (referral,) = by_type["public.referral.issued.v1"]
    assert referral.data["child_ref"] == ref_a and referral.data["district"] == DISTRICT
    assert datetime.fromisoformat(referral.data["deadline"]) == deadline
    rt.engine.dispose()
    queue_engine.dispose()
