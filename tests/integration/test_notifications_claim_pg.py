"""A dispatcher's claim on PostgreSQL reads the queued messages along their
index, in the claim's order: no scan of the table and no sort, however
many messages were sent before or wait on other channels
(services/notifications/usecases/dispatching.py, `claims`)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from services.notifications.domain import Channel
from services.notifications.models import Message
from services.notifications.usecases.dispatching import claims
from tests.builders import migrated

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def message(i: int, channel: str, status: str, urgent: bool = False) -> dict:
    return dict(id=f"m{i:06d}", source_event_id=f"e{i:06d}", source_event_type="referral.issued.v1",
                kind="referral_issued", channel=channel, address="+996700000000", address_hash=f"h{i % 50}",
                locale="ru", body="x" * 300, urgent=urgent, status=status, attempts=0,
                next_attempt_at=NOW - timedelta(seconds=i), created_at=NOW - timedelta(hours=1))


def test_a_claim_reads_the_queued_messages_along_their_index_without_a_scan_or_a_sort(pg_url):
    rows = ([message(i, "sms", "delivered") for i in range(4000)]
            + [message(i, "email", "queued") for i in range(4000, 5000)]
            + [message(i, "sms", "queued", urgent=i % 10 == 0) for i in range(5000, 6000)])
    with migrated("notifications", pg_url("claim")) as engine:
        with engine.begin() as conn:
            conn.execute(sa.insert(Message), rows)
            conn.execute(sa.text("ANALYZE messages"))
            [leases, due] = claims(Channel.SMS, NOW)
            query = due.limit(8).with_for_update(skip_locked=True)
            plan = "\n".join(conn.execute(sa.text("EXPLAIN " + str(query.compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})))).scalars())
            taken = conn.execute(query).scalars().all()
    assert "ix_messages_queued" in plan and "Seq Scan" not in plan and "Sort" not in plan, plan
    expected = sorted((r for r in rows[5000:]), key=lambda r: (not r["urgent"], r["next_attempt_at"]))[:8]
    assert taken == [r["id"] for r in expected], "urgent first, each in the order they came due"
