"""Retention on PostgreSQL (kezek/retention.py): the queue's job anonymises
a closed entry in place, rewrites the family's words in the audit trail
through the trail's one gate (the append-only trigger lets the job's own
transaction through, and nobody else), and `kezek queue-replay` still
matches afterwards."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kezek.db import make_session_factory
from kezek.retention import ANONYMISED, RetentionPolicy, anonymous_pin
from services.queue.domain import JoinQueue
from services.queue.models import Application
from services.queue.retention import retention_job
from services.queue.usecases import Queue
from tests.builders import Clock, kindergarten, migrated

pytestmark = pytest.mark.integration
START = datetime(2027, 3, 1, 4, tzinfo=UTC)


def test_retention_on_postgresql_rewrites_the_audit_only_through_its_gate_and_replay_matches(pg_url):
    with migrated("queue", pg_url("retention_queue")) as engine:
        clock = Clock(START)
        sessions = make_session_factory(engine)
        queue = Queue(sessions, clock=clock)
        queue.kindergartens.save(kindergarten("sun", district="Leninsky"), actor="admin:1")
        for i in range(1, 4):
            queue.entries.join(JoinQueue(
                application_id=f"a{i}", pin=f"2150620240000{i}", surname="Asanov", name="Aibek", category="general",
                language="ru", preferences=("sun",), parent_id=f"p{i}",
                queue_date=datetime(2026, 1, i, 4, tzinfo=UTC)), actor="parent:1")
        queue.places.publish("sun", 2024, "ru", 1, actor="kindergarten:sun")
        [ref] = queue.allocation.process_requests().issued
        queue.referrals.record_enrolment(key="e1", referral_id=str(ref.referral_id), application_id="a1", at=START)
        queue.entries.remove("a2", actor="parent:2", reason="moved to Osh, Lenina 5")

        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with sessions.begin() as s:
                s.execute(sa.text("UPDATE audit_trail SET details = '{}'"))

        clock.now = START + timedelta(days=2000)
        report = retention_job(sessions, RetentionPolicy(), now=clock).run()
        assert report.by_outcome == {"enrolled": 1, "removed": 1}
        with engine.connect() as c:
            pins = dict(c.execute(sa.select(Application.id, Application.pin)).all())
            assert pins == {"a1": anonymous_pin("a1"), "a2": anonymous_pin("a2"), "a3": "21506202400003"}
            reason = c.execute(sa.text("SELECT details->>'reason' FROM audit_trail WHERE subject = 'application:a2' "
                                       "AND action = 'application.removed'")).scalar_one()
            assert reason == ANONYMISED
            gate = c.execute(sa.text("SELECT current_setting('kezek.audit_rewrite', true)")).scalar()
            assert gate in (None, "", "off")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with sessions.begin() as s:
                s.execute(sa.text("UPDATE audit_trail SET details = '{}'"))
        assert all(r["matches"] for r in queue.audit.replay())
