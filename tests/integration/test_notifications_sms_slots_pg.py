"""Two makers of SMS to one phone at once, on PostgreSQL (two consumer
replicas whose partitions hold two children of one parent): the second
counts the first's SMS in the phone's rate limit, instead of both taking
the same free slots (services/notifications/usecases/moves.py,
`sms_slots_of`)."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek.db import make_session_factory, unit_of_work
from kezek.events import new_event
from services.notifications.models import Message, outbox
from services.notifications.service import NotificationService
from tests.builders import migrated

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 5, tzinfo=UTC)    # 11:00 in Bishkek, a Monday


def ev(type_: str, data: dict):
    return new_event(type_, f"x:{uuid.uuid4()}", data, source="test", time=NOW)


def test_sms_made_at_once_for_one_phone_by_two_consumers_keep_to_its_rate_limit(pg_url):
    with migrated("notifications", pg_url("slots")) as engine:
        service = NotificationService(make_session_factory(engine), tz=ZoneInfo("Asia/Bishkek"),
                                      cabinet_url="https://kezek.kg/cabinet", clock=lambda: NOW)

        def handle(s, event) -> None:
            assert outbox.claim(s, "notifications", event.id)
            service.handle(s, event)

        with unit_of_work(service.sessions) as s:
            for app in ("a1", "a2"):
                handle(s, ev("application.received.v1", {
                    "application_id": app, "parent_id": "p1", "locale": "ru", "phone": "+996700123456",
                    "queue_date": "2026-01-10T04:00:00Z"}))

        def issue(s, app: str) -> None:
            for i in range(4):
                handle(s, ev("referral.issued.v1", {
                    "referral_id": f"{app}-r{i}", "application_id": app, "kindergarten_id": "k1",
                    "kindergarten_name": "Күн", "deadline": "2027-03-08T18:00:00Z", "needs_confirmation": False}))

        second_done = threading.Event()

        def second() -> None:
            with unit_of_work(service.sessions) as s:
                issue(s, "a2")
            second_done.set()

        with unit_of_work(service.sessions) as s:
            issue(s, "a1")                      # its 4 SMS written, not committed yet
            other = threading.Thread(target=second)
            other.start()
            assert not second_done.wait(1.0), "the second maker waits for the first to commit"
        other.join(timeout=30)
        assert second_done.is_set()
        with service.sessions() as s:
            slots = sorted(s.scalars(sa.select(Message.next_attempt_at).where(Message.channel == "sms")))
    first = slots[0]
    assert len(slots) == 8
    assert sum(1 for t in slots if t < first + timedelta(hours=1)) == 5, "five an hour to one phone"
