"""The workflow's notify_parent activity: one path per kind (the reminder
from the activity, facts from Kafka), once per idempotency key."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

# The service tests' database, clock and helpers (tests/unit is on sys.path).
from test_notifications_service import (  # noqa: F401  (fixtures)
    clock, consume, issued, messages, migrated_db, received, service,
)

from services.notifications.activities import NotificationActivities
from workflows import contracts as c

AT = datetime(2027, 3, 4, 3, tzinfo=UTC)  # 09:00 in Bishkek


def call(kind="referral.deadline_approaching.v1", key="referral-r1:reminder:1:notify", **data):
    data = {"referral_id": "r1", "kindergarten_id": "k1", "deadline": "2027-03-09T00:00:00",
            "working_days_left": 2, "window": "enrolment", **data}
    return c.NotifyParent(idempotency_key=key, referral_id="r1", application_id="a1", at=AT, kind=kind,
                          parent_id="p1", data=data)


async def notify(service, payload) -> bool:
    return await ActivityEnvironment().run(NotificationActivities(service).notify_parent, payload)


def test_activity_is_registered_under_the_contract_name(service):
    [fn] = NotificationActivities(service).all()
    assert fn.__temporal_activity_definition.name == c.NOTIFY_PARENT


async def test_reminder_reaches_the_parent_in_their_language(service):
    consume(service, received(locale="ky"))
    consume(service, issued())
    assert await notify(service, call())
    near = messages(service, kind="deadline_near")
    assert sorted(m.channel for m in near) == ["email", "inapp", "sms"]
    assert {m.locale for m in near} == {"ky"}
    [sms] = [m for m in near if m.channel == "sms"]
    # The workflow's deadline is local wall time: 00:00 on 9 March ends the 8th.
    assert "Күн" in sms.body and "8-март" in sms.body, sms.body


async def test_same_idempotency_key_twice_makes_one_message_per_channel(service):
    consume(service, received(locale="ru"))
    assert await notify(service, call())
    assert not await notify(service, call())
    assert sorted(m.channel for m in messages(service, kind="deadline_near")) == ["email", "inapp", "sms"]


async def test_next_reminder_with_its_own_key_is_a_new_message(service):
    consume(service, received(locale="ru"))
    await notify(service, call())
    await notify(service, call(key="referral-r1:reminder:2:notify", deadline="2027-03-16T00:00:00"))
    assert len(messages(service, kind="deadline_near", channel="sms")) == 2


@pytest.mark.parametrize("kind", ["referral.issued.v1", "referral.expired.v1", "referral.extended.v1",
                                  "referral.privilege_confirmed.v1", "referral.privilege_rejected.v1",
                                  "application.resumed.v1"])
async def test_kind_that_also_arrives_as_a_kafka_fact_makes_no_second_message(service, kind):
    consume(service, received(locale="ru"))
    event = issued()
    consume(service, event)
    before = {m.id for m in messages(service)}
    assert not await notify(service, call(kind=kind, key=f"referral-r1:{kind}:notify"))
    assert {m.id for m in messages(service)} == before


async def test_reminder_for_a_parent_not_known_yet_waits_for_the_application(service):
    assert await notify(service, call())
    assert messages(service) == []
    consume(service, received(locale="kk", phone="+77012345678"))
    near = messages(service, kind="deadline_near")
    assert {m.locale for m in near} == {"kk"} and len(near) == 3


async def test_reminder_that_cannot_make_an_event_is_refused_for_good(service):
    with pytest.raises(ApplicationError) as refused:
        await notify(service, call(deadline="not a date"))
    assert refused.value.non_retryable
