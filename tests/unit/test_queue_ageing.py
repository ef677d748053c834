"""Ageing out (DOMAIN.md section 3): a waiting child leaves the queue at
00:00 local time of the birthday on which it reaches school age; a child
holding a live referral keeps it, and leaves when the referral ends without
enrolment after that birthday. The rule (pure) and the queue's use cases on
a real (SQLite) database."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, strategies as st
from prometheus_client import REGISTRY

from services.queue.domain import JoinQueue, Policy, Refused
from services.queue.domain.ageing import latest_school_age_birth_date, reached_school_age, school_age_date
from services.queue.domain.refusals import Invalid
from services.queue.jobs import Allocator
from services.queue.models import outbox
from workflows import rules
from tests.builders import Clock, kindergarten, sqlite_queue

BIRTHDAY_MIDNIGHT = datetime(2027, 3, 1, 18, tzinfo=UTC)  # 2027-03-02 00:00 in Bishkek
POLICY = Policy()


@pytest.fixture
def clock():
    return Clock(datetime(2027, 3, 1, 4, tzinfo=UTC))  # 1 March, 10:00 in Bishkek


@pytest.fixture
def svc(tmp_path, clock):
    with sqlite_queue(tmp_path, clock, [kindergarten(kid, languages=["ru", "ky"]) for kid in ("sun", "moon")]) as service:
        yield service


def join(svc, cid, *, born="2020-03-02", serial=1, cat="general", qd="2025-01-10T10:00:00+06:00", prefs=("sun",)):
    y, m, d = born.split("-")
    svc.entries.join(JoinQueue(application_id=cid, pin=f"2{d}{m}{y}{serial:05d}", surname="Asanov", name=cid,
                               category=cat, language="ru", preferences=prefs, parent_id=f"parent-{cid}",
                               queue_date=datetime.fromisoformat(qd)), actor="parent:1")


def events(svc, type_):
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == type_)
                         .order_by(outbox.table.c.seq)).scalars().all()
    return [json.loads(p)["data"] for p in rows]


def status(svc, cid):
    return svc.views.application(cid)["status"]


def refer(svc, cid="a1", **kw):
    join(svc, cid, **kw)
    svc.places.publish("sun", int(kw.get("born", "2020-03-02")[:4]), "ru", 1, actor="kg:sun")
    [issued] = svc.allocation.process_requests().issued
    return str(issued.referral_id)


# ----------------------------------------------------------------- the rule


def test_school_age_is_reached_at_the_seventh_birthday_not_the_day_before():
    assert school_age_date(date(2020, 3, 2), POLICY) == date(2027, 3, 2)
    assert not reached_school_age(date(2020, 3, 2), date(2027, 3, 1), POLICY)
    assert reached_school_age(date(2020, 3, 2), date(2027, 3, 2), POLICY)


def test_born_on_29_february_reaches_school_age_on_28_february_of_a_common_year():
    assert school_age_date(date(2020, 2, 29), POLICY) == date(2027, 2, 28)
    assert latest_school_age_birth_date(date(2027, 2, 28), POLICY) == date(2020, 2, 29)


@given(birth=st.dates(date(2010, 1, 1), date(2030, 12, 31)), on=st.dates(date(2015, 1, 1), date(2040, 12, 31)),
       years=st.integers(3, 10))
def test_the_daily_jobs_birth_date_bound_is_the_rule_itself(birth, on, years):
    policy = Policy(school_age_years=years)
    assert (birth <= latest_school_age_birth_date(on, policy)) == reached_school_age(birth, on, policy)


def test_school_age_is_policy_seven_by_default_and_must_be_above_the_minimum_age():
    assert POLICY.school_age_years == rules.DEFAULTS.school_age_years == 7
    assert Policy().replace(school_age_years=6).school_age_years == 6
    for bad in (2, 1, 11, "7", True):
        with pytest.raises(Invalid) as exc:
            Policy().replace(school_age_years=bad)
        assert exc.value.field == "policy.school_age_years"


# ------------------------------------------------------------- the daily job


def test_waiting_child_leaves_the_queue_at_0000_local_time_of_its_seventh_birthday(svc, clock):
    join(svc, "a1")
    clock.now = BIRTHDAY_MIDNIGHT - timedelta(seconds=1)
    assert svc.ageing.age_out_due() == 0 and status(svc, "a1") == "queued"
    clock.now = BIRTHDAY_MIDNIGHT
    assert svc.ageing.age_out_due() == 1
    assert status(svc, "a1") == "aged_out"
    [aged] = events(svc, "application.aged_out.v1")
    assert aged == {"application_id": "a1", "parent_id": "parent-a1", "cohort": 2020, "category": "general",
                    "aged_out_at": BIRTHDAY_MIDNIGHT.isoformat(), "school_age_years": 7}
    [closed] = events(svc, "application.closed.v1")
    assert closed == {"application_id": "a1", "parent_id": "parent-a1", "outcome": "aged_out",
                      "closed_at": BIRTHDAY_MIDNIGHT.isoformat()}
    [row] = [r for r in svc.audit.trail("application:a1") if r["action"] == "application.aged_out"]
    assert row["actor"] == "system:ageing" and row["actor_role"] == "service"


def test_a_run_before_the_days_ageing_gives_no_place_to_a_child_who_reached_school_age_at_its_0000(svc, clock):
    """The day turns inside the allocator loop's tick, after its ageing job
    and before its run, and a place comes free between: it goes to the next
    child, not to one who left the queue at 00:00 and is still marked
    waiting; the next tick ages him out."""
    join(svc, "seven")
    join(svc, "six", born="2020-06-01", serial=2, qd="2025-02-10T10:00:00+06:00")
    clock.now = BIRTHDAY_MIDNIGHT - timedelta(seconds=1)
    Allocator(svc).keep_calendar()
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(seconds=1)
    svc.places.publish("sun", 2020, "ru", 1, actor="kg:sun")
    assert [x.application_id for x in svc.allocation.process_requests().issued] == ["six"]
    Allocator(svc).run_once()
    assert status(svc, "seven") == "aged_out"


def test_a_child_on_the_stoplist_at_its_birthday_leaves_too_and_its_stoplist_end_does_not_bring_it_back(svc, clock):
    ref = refer(svc)
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now, outcome="expired")
    until = clock.now + timedelta(days=10)
    svc.referrals.put_on_stoplist(key="k2", referral_id=ref, application_id="a1", at=clock.now, until=until)
    clock.now = BIRTHDAY_MIDNIGHT
    assert svc.ageing.age_out_due() == 1 and status(svc, "a1") == "aged_out"
    clock.now = until
    assert svc.referrals.lift_due_stoplists() == 0
    svc.referrals.lift_stoplist(key="k3", referral_id=ref, application_id="a1", at=until)
    assert status(svc, "a1") == "aged_out" and events(svc, "application.resumed.v1") == []


def test_a_stoplist_that_ends_after_the_birthday_sends_the_child_out_not_back(svc, clock):
    ref = refer(svc)
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now, outcome="expired")
    svc.referrals.put_on_stoplist(key="k2", referral_id=ref, application_id="a1", at=clock.now,
                                  until=BIRTHDAY_MIDNIGHT + timedelta(days=3))
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(days=3)   # the daily job did not run meanwhile
    assert svc.referrals.lift_due_stoplists() == 1
    assert status(svc, "a1") == "aged_out" and events(svc, "application.resumed.v1") == []


def test_the_job_runs_once_a_local_day_and_catches_up_a_day_it_missed(svc, clock):
    join(svc, "a1")
    join(svc, "a2", born="2020-03-03", serial=2)
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(hours=1)
    assert svc.ageing.daily() == 1
    join(svc, "late", born="2019-01-01", serial=3)   # joined already older: caught at the next day's run
    assert svc.ageing.daily() == 0
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(days=2)
    assert svc.ageing.daily() == 2
    assert {status(svc, c) for c in ("a1", "a2", "late")} == {"aged_out"}
    late = [e for e in events(svc, "application.aged_out.v1") if e["application_id"] == "late"][0]
    assert late["aged_out_at"] == (BIRTHDAY_MIDNIGHT + timedelta(hours=1)).isoformat()  # when it joined


def test_the_job_reads_the_days_birthdays_through_the_index_not_the_queue(svc):
    with svc.sessions() as s:
        plan = " ".join(str(r) for r in s.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT id FROM applications "
            "WHERE status IN ('queued', 'paused') AND birth_date <= '2020-03-02'")))
    assert "ix_applications_school_age" in plan


def test_children_behind_an_aged_out_child_move_up(svc, clock):
    join(svc, "old", qd="2025-01-01T10:00:00+06:00")
    join(svc, "young", born="2023-05-05", serial=2, qd="2025-02-01T10:00:00+06:00")
    clock.now = BIRTHDAY_MIDNIGHT
    svc.ageing.age_out_due()
    assert [p.position for p in svc.views.positions("young")] == [1]
    svc.positions.publish()
    moved = [e for e in events(svc, "application.position_changed.v1") if e["application_id"] == "young"]
    assert moved[-1]["position"] == 1


def test_an_aged_out_entry_cannot_be_removed_or_change_preferences(svc, clock):
    join(svc, "a1")
    clock.now = BIRTHDAY_MIDNIGHT
    svc.ageing.age_out_due()
    with pytest.raises(Refused) as exc:
        svc.entries.remove("a1", actor="parent:1")
    assert exc.value.code == "entry_aged_out"
    with pytest.raises(Refused):
        svc.entries.set_preferences("a1", ["moon"], actor="parent:1")


# ------------------------------------------------- a referral held at the birthday


def test_a_child_holding_a_live_referral_keeps_it_at_its_birthday(svc, clock):
    refer(svc)
    clock.now = BIRTHDAY_MIDNIGHT
    assert svc.ageing.age_out_due() == 0
    assert status(svc, "a1") == "referred"


def test_referral_expired_after_the_birthday_sends_the_child_out_instead_of_onto_the_stoplist(svc, clock):
    ref = refer(svc)
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(days=2)
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now, outcome="expired")
    app = svc.views.application("a1")
    assert app["status"] == "aged_out" and app["paused_until"] is None
    [expired] = events(svc, "referral.expired.v1")
    assert expired["aged_out"] is True and "stoplist_until" not in expired
    [aged] = events(svc, "application.aged_out.v1")
    assert aged["referral_id"] == ref and aged["aged_out_at"] == clock.now.isoformat()
    assert svc.referrals.entry_status("a1") == "aged_out"
    # A workflow older than the change still asks for the stop-list: nothing happens.
    assert svc.referrals.put_on_stoplist(key="k2", referral_id=ref, application_id="a1", at=clock.now,
                                         until=clock.now + timedelta(days=10)) is False
    assert status(svc, "a1") == "aged_out" and events(svc, "application.paused.v1") == []
    assert svc.views.places("sun")[0]["free"] == 1 and svc.audit.check_register() == []


def test_referral_cancelled_after_the_birthday_sends_the_child_out_instead_of_back_into_the_queue(svc, clock):
    ref = refer(svc, prefs=("sun", "moon"))
    clock.now = BIRTHDAY_MIDNIGHT
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now, outcome="cancelled",
                               drop_preference=True, actor="parent:1")
    assert status(svc, "a1") == "aged_out"
    assert [e["outcome"] for e in events(svc, "application.closed.v1")] == ["aged_out"]


def test_privilege_rejected_after_the_birthday_sends_the_child_out_not_to_the_general_queue(svc, clock):
    ref = refer(svc, cat="extraordinary")
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(hours=5)
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now,
                               outcome="privilege_rejected", reason="no certificate")
    svc.referrals.return_to_general_queue(key="k2", referral_id=ref, application_id="a1", at=clock.now,
                                          from_category="extraordinary")
    assert status(svc, "a1") == "aged_out"
    assert events(svc, "application.returned_to_general_queue.v1") == []


def test_referral_ended_the_day_before_the_birthday_returns_the_child_as_usual(svc, clock):
    ref = refer(svc)
    clock.now = BIRTHDAY_MIDNIGHT - timedelta(minutes=1)
    svc.referrals.return_place(key="k1", referral_id=ref, application_id="a1", at=clock.now, outcome="cancelled")
    assert status(svc, "a1") == "queued"


def test_enrolment_after_the_birthday_is_an_enrolment(svc, clock):
    ref = refer(svc)
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(days=1)
    svc.referrals.record_enrolment(key="k1", referral_id=ref, application_id="a1", at=clock.now)
    assert status(svc, "a1") == "enrolled"
    assert [e["outcome"] for e in events(svc, "application.closed.v1")] == ["enrolled"]


# ----------------------------------------------------------- closing facts


def test_removal_closes_the_application(svc, clock):
    join(svc, "a1")
    svc.entries.remove("a1", actor="parent:1", reason="moved away")
    assert events(svc, "application.closed.v1") == [
        {"application_id": "a1", "parent_id": "parent-a1", "outcome": "removed", "closed_at": clock.now.isoformat()}]


def test_a_refused_application_is_closed_but_a_taken_id_closes_nobody_elses(svc, clock):
    from kezek.events import new_event

    join(svc, "a1", serial=5)

    def submitted(app_id, serial):
        return new_event("application.submitted.v1", f"application:{app_id}", {
            "application_id": app_id, "child_pin": f"202032020{serial:05d}", "child_surname": "Asanov",
            "child_name": "Aibek", "child_birth_date": "2020-03-02", "category": "general", "language": "ru",
            "preferences": ["sun"], "queue_date": clock.now.isoformat(), "parent_id": "p2", "country": "KG",
            "locale": "ru"}, source="registration")

    with svc.sessions() as s, s.begin():
        svc.entries.join_submitted(s, submitted("a2", 5))      # the same child: refused
        svc.entries.join_submitted(s, submitted("a1", 6))      # another child under a1's id: refused
    assert [(e["application_id"], e["outcome"]) for e in events(svc, "application.closed.v1")] == [("a2", "refused")]
    assert status(svc, "a1") == "queued"


def test_a_calendar_trigger_that_keeps_failing_stops_neither_the_other_triggers_nor_the_run(svc, clock, monkeypatch):
    """One trigger the database keeps refusing (here the scheduled places)
    is counted and logged; the day's ageing and the allocation still run."""
    def refused():
        raise sa.exc.IntegrityError("UPDATE places", {}, Exception("a poisoned scheduled place"))

    join(svc, "seven")
    join(svc, "six", born="2020-06-01", serial=2, qd="2025-02-10T10:00:00+06:00")
    svc.places.publish("sun", 2020, "ru", 1, actor="kg:sun")
    monkeypatch.setattr(svc.places, "publish_due", refused)
    failed = REGISTRY.get_sample_value("kezek_calendar_trigger_errors_total", {"trigger": "publish_due"}) or 0
    clock.now = BIRTHDAY_MIDNIGHT + timedelta(seconds=1)
    assert Allocator(svc).run_once() == 1
    assert status(svc, "seven") == "aged_out" and status(svc, "six") == "referred"
    assert REGISTRY.get_sample_value("kezek_calendar_trigger_errors_total", {"trigger": "publish_due"}) == failed + 1
