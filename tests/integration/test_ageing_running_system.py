"""A child ages out in the running system (DOMAIN.md section 3): the queue
on PostgreSQL with its allocator loop's daily job, the real ReferralWorkflow
on Temporal calling the queue's activities, the facts relayed to Kafka and
the notifications service consuming them on its own PostgreSQL database.

Two children turn 7 today (local time). The one waiting leaves the queue at
00:00 when the job runs; the one holding a referral issued yesterday keeps
it at 00:00 and leaves when its parent gives the referral up. Each parent is
told in the parent's own language."""
from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek import calendar as kcal
from kezek.db import make_engine, make_session_factory
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay, make_producer, wait_until_relayed
from services.notifications.activities import NotificationActivities
from services.notifications.consumers import make_consumer as notifications_consumer, topics
from services.notifications.models import Message
from services.notifications.service import NotificationService
from services.queue.activities import QueueActivities, WorkflowStarter
from services.queue.domain import JoinQueue
from services.queue.jobs import Allocator
from services.queue.models import outbox
from services.queue.usecases import Queue
from tests.integration.test_queue_kafka_temporal import read_types, until
from workflows import contracts as c
from workflows.worker import build_worker, connect

pytestmark = pytest.mark.integration
CAL = kcal.calendar("KG")


class Clock:
    """The queue's clock: real time, or a moment the test sets."""

    def __init__(self):
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


def kg_pin(sex: str, born: date, serial: int) -> str:
    return f"{sex}{born:%d%m%Y}{serial:05d}"


async def test_children_reaching_school_age_leave_the_queue_and_their_parents_are_told(
        pg_url, kafka_bootstrap, temporal_dev, temporal_namespace):
    today = CAL.local_date(datetime.now(UTC))
    if (today.month, today.day) == (2, 29):
        today -= timedelta(days=1)   # a 29 February birthday is the rule's own case (unit tests)
    born = today.replace(year=today.year - 7)               # both turn 7 today
    midnight = CAL.start_of_day(today)
    clock = Clock()
    q_url = pg_url("ageing_queue")
    upgrade("queue", q_url)
    q_engine = make_engine(q_url)
    queue = Queue(make_session_factory(q_engine), clock=clock)
    n_url = pg_url("ageing_notifications")
    upgrade("notifications", n_url)
    n_engine = make_engine(n_url)
    notifications = NotificationService(make_session_factory(n_engine), tz=ZoneInfo("Asia/Bishkek"),
                                        cabinet_url="https://kezek.example/cabinet")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, sorted({*topics(prefix), f"{prefix}.place", f"{prefix}.referral"}))
    queue.kindergartens.save({"id": "sun", "name": "Sun", "district": "Leninsky", "languages": ["ru"]},
                             actor="admin:1")

    # The parents' contacts reach the notifications service as registration publishes them.
    producer = make_producer(kafka_bootstrap)
    for app_id, locale in (("waiting", "ky"), ("referred", "kk")):
        producer.send(f"{prefix}.application", key=app_id, value=new_event("application.received.v1",
                      f"application:{app_id}", {"application_id": app_id, "parent_id": f"p-{app_id}",
                                                "locale": locale, "email": f"{app_id}@example.kg",
                                                "queue_date": "2025-01-10T04:00:00Z"},
                      source="registration").to_json())
    producer.flush()
    producer.close()

    # Yesterday: both wait; one place is published and goes to the child ahead.
    clock.at = midnight - timedelta(hours=14)
    for app_id, serial, queued in (("referred", 1, "2025-01-10T10:00:00+06:00"),
                                   ("waiting", 2, "2025-02-10T10:00:00+06:00")):
        queue.entries.join(JoinQueue(application_id=app_id, pin=kg_pin("2", born, serial), surname="Asanov",
                                     name=app_id, category="general", language="ru", preferences=("sun",),
                                     parent_id=f"p-{app_id}", queue_date=datetime.fromisoformat(queued)),
                           actor="parent:1")
    queue.places.publish("sun", born.year, "ru", 1, actor="kindergarten:sun")
    allocator = Allocator(queue)
    assert allocator.run_once() == 1
    assert queue.views.application("referred")["status"] == "referred"

    stop = threading.Event()
    consumer = notifications_consumer(notifications, kafka_bootstrap, prefix, group_id=f"n-{prefix}")
    consuming = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    consuming.start()
    relay = OutboxRelay(queue.sessions, outbox, kafka_bootstrap, topic_prefix=prefix)
    client = await connect(temporal_dev.address, temporal_namespace)
    task_queue = f"referrals-{prefix}"
    worker = build_worker(client, [*QueueActivities(queue).all(), *NotificationActivities(notifications).all()],
                          task_queue=task_queue)
    starter = WorkflowStarter(queue, address=temporal_dev.address, namespace=temporal_namespace,
                              task_queue=task_queue)
    try:
        async with worker:
            assert await starter.start_pending(client) == 1
            ref_id = queue.views.application("referred")["referral"]["id"]
            handle = client.get_workflow_handle(c.workflow_id(str(ref_id)))
            await until(lambda: (queue.views.application("referred")["referral"] or {}).get("state")
                        == "awaiting_enrolment", what="the referral recorded by its workflow")

            # 00:00 today: the allocator loop's daily job.
            clock.at = midnight
            allocator.run_once()
            assert queue.views.application("waiting")["status"] == "aged_out"
            assert queue.views.application("referred")["status"] == "referred"   # keeps its referral

            # The parent gives the referral up after the birthday: out of the queue, not back into it.
            clock.at = None
            result = await handle.execute_update(c.CANCEL, c.CancelReferral(actor="parent:p-referred"),
                                                 result_type=c.ActResult)
            assert result.event == "referral.cancelled"
            assert queue.views.application("referred")["status"] == "aged_out"
            assert queue.views.places("sun")[0]["free"] == 1 and queue.audit.check_register() == []
            await handle.result()

            await asyncio.to_thread(wait_until_relayed, relay)
            seen = await asyncio.to_thread(read_types, kafka_bootstrap, prefix,
                                           {"application.aged_out.v1", "application.closed.v1"})
            assert {"application.aged_out.v1", "application.closed.v1"} <= seen

            def told() -> dict[str, list[tuple[str, str]]]:
                with notifications.sessions() as s:
                    rows = s.execute(sa.select(Message.application_id, Message.channel, Message.locale)
                                     .where(Message.kind == "aged_out")).all()
                out: dict[str, list] = {}
                for app_id, channel, locale in rows:
                    out.setdefault(app_id, []).append((channel, locale))
                return out if len(out) == 2 else {}
            messages = await until(told, what="both parents told")
            assert sorted(messages["waiting"]) == [("email", "ky"), ("inapp", "ky")]
            assert sorted(messages["referred"]) == [("email", "kk"), ("inapp", "kk")]
            with notifications.sessions() as s:
                body = s.scalar(sa.select(Message.body).where(
                    Message.application_id == "waiting", Message.kind == "aged_out", Message.channel == "email"))
            assert "мектеп курагына жетти" in body
    finally:
        stop.set()
        consuming.join(10)
        relay.close()
        q_engine.dispose()
        n_engine.dispose()
