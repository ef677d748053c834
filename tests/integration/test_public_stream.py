"""The public stream end to end on a real broker and PostgreSQL: internal
events in, public events on kezek.public.v1 out, once each, with no
personal data, whatever order the internal topics arrive in."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import jsonschema
import pytest
import sqlalchemy as sa

from kezek.events import Event, new_event, schema_for
from kezek.migrations import upgrade
from kezek.relay import wait_until_relayed
from kezek.settings import Settings
from services.gateway.public.models import ParkedEvent, public_outbox
from services.gateway.public.projector import make_consumer
from services.gateway.public.runtime import PublicRuntime
from services.gateway.public.tools import drive, publish, read_topic

pytestmark = pytest.mark.integration

PINS = ["21505201912345", "11203202054321"]
PERSONAL = PINS + ["Asanov", "Aibek", "Асанова", "aibek@example.kg", "+996555123456", "ул. Токтогула 12"]


def queued(app_id: str, category: str = "general") -> Event:
    return new_event("application.queued.v1", f"application:{app_id}", {
        "application_id": app_id, "parent_id": f"parent-{app_id}", "category": category, "cohort": 2019,
        "language": "ky", "queue_date": "2022-02-01T10:00:00+06:00", "preferences": ["kg-12"],
    }, source="queue")


def submitted(app_id: str, pin: str, surname: str, name: str, email: str) -> Event:
    event = new_event("application.submitted.v1", app_id, {
        "application_id": app_id, "parent_id": f"parent-{app_id}", "country": "KG", "child_pin": pin,
        "child_birth_date": f"{pin[5:9]}-{pin[3:5]}-{pin[1:3]}", "child_surname": surname, "child_name": name,
        "category": "general", "queue_date": "2022-02-01T10:00:00+06:00", "language": "ky",
        "preferences": ["kg-12"], "district": "41711100000000", "region": "41711000000000", "locale": "ky",
    }, source="registration")
    # A producer that leaks a contact into its event: still nothing public.
    return event.model_copy(update={"data": {**event.data, "email": email}})


@pytest.fixture
def public_env(pg_url, kafka_bootstrap):
    url = pg_url("gateway")
    upgrade("gateway", url)
    settings = Settings(env="test", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=f"t{uuid.uuid4().hex[:8]}",
                        pseudonym_key="stream-test-key")
    rt = PublicRuntime(settings, database_url=url)
    rt.projector.directory = {"kg-12": "41711100000000"}.get  # the queue's register of kindergartens
    yield rt
    rt.engine.dispose()


def public_count(rt) -> int:
    with rt.sessions() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(public_outbox.table))


def test_internal_events_become_public_events_once_with_no_personal_data(public_env):
    rt = public_env
    t = rt.settings.topic
    app1, app2 = submitted("app-1", PINS[0], "Asanov", "Aibek", "aibek@example.kg"), \
        submitted("app-2", PINS[1], "Асанова", "Айпери", "aipery@example.kg")
    issued = new_event("referral.issued.v1", "101", {
        "referral_id": "101", "application_id": "app-1", "parent_id": "parent-app-1", "kindergarten_id": "kg-12",
        "kindergarten_name": "Балдаркан №12", "kindergarten_address": "ул. Токтогула 12",
        "deadline": "2025-03-14T18:00:00+06:00", "needs_confirmation": False, "category": "general",
        "cohort": 2019, "language": "ky",
    }, source="queue")
    place = new_event("place.published.v1", "place:kg-12/2019/ky", {
        "kindergarten_id": "kg-12", "cohort": 2019, "language": "ky", "for_category": None, "count": 3, "free": 3,
    }, source="queue")
    # The referral arrives before its child's application: the projector
    # holds it back until it knows the child.
    publish(rt.settings.kafka_bootstrap, t("place"), [place])
    publish(rt.settings.kafka_bootstrap, t("referral"), [issued])
    consumer = make_consumer(rt.sessions, rt.projector, rt.settings.kafka_bootstrap, rt.internal_topics)
    try:
        drive(consumer.poll_once, lambda: public_count(rt) >= 1)
        with rt.sessions() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(ParkedEvent)) == 1
        # Sent twice (an at-least-once relay upstream): one public event.
        q1 = queued("app-1")
        publish(rt.settings.kafka_bootstrap, t("application"), [app1, app2, q1, queued("app-2"), q1])
        drive(consumer.poll_once, lambda: public_count(rt) >= 4)
        consumer.poll_once(timeout_ms=1000)
    finally:
        consumer.close()
    with rt.sessions() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ParkedEvent)) == 0
    relay = rt.relay()
    wait_until_relayed(relay)
    relay.close()

    records = read_topic(rt.settings.kafka_bootstrap, rt.settings.public_topic, expect=4)
    events = [Event.from_json(r.value) for r in records]
    assert sorted(e.type for e in events) == ["public.application.queued.v1", "public.application.queued.v1",
                                              "public.place.published.v1", "public.referral.issued.v1"]
    for r, e in zip(records, events):
        raw = r.value.decode()
        for value in PERSONAL:
            assert value not in raw
        assert r.key.decode() == e.subject
        jsonschema.validate(json.loads(raw), schema_for("envelope"))
        jsonschema.validate(e.data, schema_for(e.type))
    by_type = {e.type: e for e in events}
    referral = by_type["public.referral.issued.v1"]
    queued_refs = {e.data["child_ref"] for e in events if e.type == "public.application.queued.v1"}
    assert referral.data["child_ref"] in queued_refs and referral.subject == referral.data["child_ref"]
    assert referral.data["district"] == "41711100000000" and referral.data["deadline"] == "2025-03-14T18:00:00+06:00"
    assert by_type["public.place.published.v1"].data == {
        "kindergarten_id": "kg-12", "district": "41711100000000", "cohort": 2019, "language": "ky", "count": 3}
    assert rt.settings.public_topic.endswith(".public.v1")


def test_entry_whose_child_pin_never_comes_is_published_after_the_grace_period(public_env):
    """An entry moved in by an import has no registration event: after the
    grace period it gets a ref of its own, and its parked events go out."""
    rt = public_env
    publish(rt.settings.kafka_bootstrap, rt.settings.topic("application"), [queued("imported-1", "privileged")])
    consumer = make_consumer(rt.sessions, rt.projector, rt.settings.kafka_bootstrap, rt.internal_topics)
    try:
        drive(consumer.poll_once, lambda: parked(rt) == 1)
    finally:
        consumer.close()
    assert public_count(rt) == 0
    with rt.sessions() as s, s.begin():
        assert rt.projector.sweep(s, now=datetime.now(UTC) + rt.projector.park_grace) == 1
    assert parked(rt) == 0 and public_count(rt) == 1
    with rt.sessions() as s:
        payload = json.loads(s.scalar(sa.select(public_outbox.table.c.payload)))
    assert payload["type"] == "public.application.queued.v1"
    assert payload["data"]["child_ref"] == rt.projector.names.entry("imported-1")
    assert payload["data"]["category"] == "privileged" and payload["data"]["district"] is None


def parked(rt) -> int:
    with rt.sessions() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(ParkedEvent))
