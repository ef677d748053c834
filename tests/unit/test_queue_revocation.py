"""verification.privilege_revoked.v1 applied by the queue: the child moves
to the general queue with its original queue date, once, whichever of the
event and the referral workflow comes first, and nothing restores it."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from kezek.events import new_event
from services.queue.consumers import PRIVILEGE_REVOKED
from services.queue.models import outbox
from services.queue.domain import JoinQueue
from tests.builders import sqlite_queue

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def svc(tmp_path):
    with sqlite_queue(tmp_path, lambda: NOW) as service:
        yield service


def join(svc, cid, *, cat="general", qd="2026-01-10T10:00:00+06:00", serial=1):
    return svc.views.application(svc.entries.join(JoinQueue(application_id=cid, pin=f"215062024{serial:05d}", surname="Asanov",
                                    name="Aibek", category=cat, language="ru", preferences=("sun",),
                                    queue_date=datetime.fromisoformat(qd), parent_id=f"p-{cid}"), actor="parent:1"))


def revoked(app_id, *, referral_id=None, case="case-1"):
    return new_event(PRIVILEGE_REVOKED, app_id, {
        "case_id": case, "application_id": app_id, "from_category": "extraordinary", "to_category": "general",
        "reason": "the certificate was forged", "revoked_at": "2027-03-01T12:00:00+06:00",
        "referral_id": referral_id, "referral_rejected": referral_id is not None, "revoked_by": "staff-1"},
        source="verification")


def consume(svc, event) -> bool:
    """What the IdempotentConsumer does with one message, without Kafka."""
    with svc.sessions() as s, s.begin():
        if not outbox.claim(s, "queue.verification", event.id):
            return False
        svc.entries.privilege_revoked(s, event)
        return True


def returned(svc) -> list[dict]:
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.payload)
                         .where(outbox.table.c.type == "application.returned_to_general_queue.v1")).scalars()
        return [json.loads(p)["data"] for p in rows]


def test_revoked_privilege_moves_the_child_to_the_general_queue_keeping_its_queue_date(svc):
    join(svc, "a1", cat="extraordinary", qd="2026-03-01T00:00:00+06:00")
    assert consume(svc, revoked("a1"))
    app = svc.views.application("a1")
    assert app["category"] == "general" and app["claimed_category"] == "extraordinary"
    assert app["queue_date"] == datetime(2026, 2, 28, 18, tzinfo=UTC)
    [ev] = returned(svc)
    assert ev["from_category"] == "extraordinary" and ev["reason"] == "the certificate was forged"
    [entry] = [e for e in svc.audit.trail("application:a1") if e["action"] == "application.returned_to_general_queue"]
    assert entry["actor"].startswith("event:")


def test_revocation_delivered_twice_or_sent_again_applies_once(svc):
    join(svc, "a1", cat="extraordinary")
    event = revoked("a1")
    assert consume(svc, event)
    assert not consume(svc, event)                  # the same message redelivered
    assert consume(svc, revoked("a1", case="case-2"))  # another case, same child: nothing left to move
    assert svc.views.application("a1")["category"] == "general"
    assert len(returned(svc)) == 1


def test_revocation_after_the_referral_workflow_returned_the_child_changes_nothing_more(svc):
    join(svc, "a1", cat="extraordinary")
    svc.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    [issued] = svc.allocation.process_requests().issued
    # The supervisor rejected the referral through its workflow first ...
    assert svc.referrals.return_place(key="k1", referral_id=str(issued.referral_id), application_id="a1", at=NOW,
                            outcome="privilege_rejected", reason="forged")
    assert svc.referrals.return_to_general_queue(key="k2", referral_id=str(issued.referral_id), application_id="a1", at=NOW,
                                       from_category="extraordinary")
    # ... and its fact arrives afterwards.
    assert consume(svc, revoked("a1", referral_id=str(issued.referral_id)))
    app = svc.views.application("a1")
    assert app["category"] == "general" and app["status"] == "queued"
    assert len(returned(svc)) == 1


def test_revocation_before_the_referral_workflow_lets_the_workflow_finish_without_failing(svc):
    join(svc, "a1", cat="extraordinary")
    svc.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    [issued] = svc.allocation.process_requests().issued
    assert consume(svc, revoked("a1", referral_id=str(issued.referral_id)))
    assert svc.referrals.return_place(key="k1", referral_id=str(issued.referral_id), application_id="a1", at=NOW,
                            outcome="privilege_rejected", reason="forged")
    assert svc.referrals.return_to_general_queue(key="k2", referral_id=str(issued.referral_id), application_id="a1", at=NOW,
                                       from_category="extraordinary")
    app = svc.views.application("a1")
    assert app["category"] == "general" and app["status"] == "queued"
    assert len(returned(svc)) == 1
    assert svc.audit.check_register() == []


def test_later_events_do_not_restore_a_revoked_privilege(svc):
    join(svc, "a1", cat="extraordinary")
    consume(svc, revoked("a1"))
    # Registration's submission of the same application, delivered again.
    again = new_event("application.submitted.v1", "application:a1", {
        "application_id": "a1", "parent_id": "p-a1", "country": "KG", "child_pin": "21506202400001",
        "child_birth_date": "2024-06-15", "child_surname": "Asanov", "child_name": "Aibek",
        "category": "extraordinary", "queue_date": "2026-01-10T10:00:00+06:00", "language": "ru",
        "preferences": ["sun"], "locale": "ru"}, source="registration")
    with svc.sessions() as s, s.begin():
        svc.entries.join_submitted(s, again)
    consume(svc, revoked("a1", case="case-2"))
    assert svc.views.application("a1")["category"] == "general"


def test_revocation_of_an_unknown_application_is_skipped_without_failing_the_consumer(svc):
    join(svc, "a1", cat="extraordinary")
    assert consume(svc, revoked("nobody"))
    assert svc.views.application("a1")["category"] == "extraordinary"
    assert returned(svc) == []
