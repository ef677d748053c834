"""Queue use cases on a real (SQLite) database: one transaction each, outbox
rows with the state, allocation triggered by the changes that matter."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from kezek.db import make_engine
from tests.migrated import upgrade
from services.queue.models import Referral, outbox
from services.queue.domain import JoinQueue, NotFound, Refused
from services.queue.store.times import aware
from tests.builders import Clock, kindergarten, ran_on, sqlite_queue


@pytest.fixture
def clock():
    return Clock(datetime(2027, 3, 1, 4, 0, tzinfo=UTC))  # 10:00 in Bishkek


@pytest.fixture
def svc(tmp_path, clock):
    woke = []
    with sqlite_queue(tmp_path, clock, [kindergarten(kid, address=f"{kid} street 1", languages=["ru", "ky"])
                                        for kid in ("sun", "moon", "star")],
                      on_allocation_requested=lambda: woke.append(1)) as service:
        service.woke = woke
        yield service


def pin(born: str, serial: int) -> str:
    y, m, dd = born.split("-")
    return f"2{dd}{m}{y}{serial:05d}"


def join(svc, cid, *, born="2024-06-15", cat="general", qd="2026-01-10T10:00:00+06:00", prefs=("sun",),
         lang="ru", serial=None):
    return svc.views.application(svc.entries.join(JoinQueue(
        application_id=cid, pin=pin(born, serial if serial is not None else abs(hash(cid)) % 99999),
        surname="Asanov", name=cid.title(), category=cat, language=lang, preferences=tuple(prefs),
        queue_date=datetime.fromisoformat(qd)), actor="parent:1"))


def events(svc, type_=None):
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.type, outbox.table.c.payload).order_by(outbox.table.c.seq)).all()
    return [json.loads(p) for t, p in rows if type_ is None or t == type_]


def test_joining_records_the_queue_date_and_writes_the_event_in_the_same_transaction(svc):
    app = join(svc, "a1", qd="2026-01-10T10:00:00+06:00")
    assert app["status"] == "queued" and app["queue_date"] == datetime(2026, 1, 10, 4, tzinfo=UTC)
    [ev] = events(svc, "application.queued.v1")
    assert ev["data"]["application_id"] == "a1" and ev["data"]["cohort"] == 2024


def test_second_registration_of_the_same_child_pin_is_refused_whoever_registers_it(svc):
    join(svc, "a1", serial=7)
    with pytest.raises(Refused) as exc:
        join(svc, "a2", serial=7)
    assert exc.value.field == "pin"


def test_rejoining_after_removal_starts_a_new_queue_date(svc, clock):
    join(svc, "a1", serial=7)
    svc.entries.remove("a1", actor="parent:1", reason="moved away")
    clock.advance(days=3)
    again = svc.views.application(svc.entries.join(JoinQueue(pin=pin("2024-06-15", 7), surname="A", name="B", category="general",
                                     language="ru", preferences=("sun",)), actor="parent:1"))
    assert again["queue_date"] == clock.now and again["id"] != "a1"


def test_pin_that_contradicts_the_birth_date_is_refused_naming_the_field(svc):
    with pytest.raises(Refused) as exc:
        svc.entries.join(JoinQueue(pin=pin("2024-06-15", 1), birth_date=date(2024, 6, 16), surname="A", name="B",
                                 category="general", language="ru", preferences=("sun",)), actor="p")
    assert exc.value.field == "birth_date"


def test_unknown_kindergarten_or_language_it_does_not_teach_is_refused_naming_the_preference(svc):
    with pytest.raises(Refused) as exc:
        join(svc, "a1", prefs=("sun", "nowhere"))
    assert exc.value.field == "preferences.1"
    with pytest.raises(Refused) as exc:
        join(svc, "a2", lang="uz")
    assert exc.value.field == "preferences.0"


def test_published_places_are_allocated_at_once_by_rank(svc):
    join(svc, "late", qd="2026-02-01T10:00:00+06:00")
    join(svc, "early", qd="2026-01-01T10:00:00+06:00")
    svc.woke.clear()
    svc.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    assert svc.woke, "publishing must wake the allocator"
    run = svc.allocation.process_requests()
    assert [i.application_id for i in run.issued] == ["early"]
    assert svc.views.application("early")["status"] == "referred"
    assert svc.views.places("sun")[0] | {} == {"kindergarten": "sun", "cohort": 2024, "language": "ru",
                                          "for_category": None, "free": 0, "held": 1, "enrolled": 0}
    assert svc.allocation.process_requests() is None  # nothing left to do
    assert svc.audit.check_register() == []


def test_child_under_two_waits_until_the_midnight_of_its_birthday(svc, clock):
    join(svc, "young", born="2025-03-03")
    svc.places.publish("sun", 2025, "ru", 1, actor="kg:sun")
    assert svc.allocation.process_requests().issued == []
    clock.now = datetime(2027, 3, 2, 18, 0, tzinfo=UTC)   # 00:00 on 3 March in Bishkek
    assert svc.allocation.request_daily()
    assert not svc.allocation.request_daily()              # once a day
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["young"]


def test_scheduled_places_are_published_when_their_moment_comes(svc, clock):
    join(svc, "a1")
    svc.places.publish("sun", 2024, "ru", 2, actor="kg:sun", publish_at=clock.now + timedelta(hours=2))
    assert svc.places.publish_due() == 0
    assert svc.views.places("sun") == []
    clock.advance(hours=2)
    assert svc.places.publish_due() == 1
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["a1"]


def test_only_free_places_can_be_withdrawn(svc):
    join(svc, "a1")
    svc.places.publish("sun", 2024, "ru", 2, actor="kg:sun")
    svc.allocation.process_requests()
    with pytest.raises(Refused) as exc:
        svc.places.withdraw("sun", 2024, "ru", 2, actor="kg:sun")
    assert exc.value.field == "count"
    assert svc.places.withdraw("sun", 2024, "ru", 1, actor="kg:sun")["free"] == 0


def test_reserved_places_go_only_to_their_category(svc):
    join(svc, "g", qd="2025-01-01T00:00:00+06:00")
    join(svc, "p", cat="privileged", qd="2026-05-01T00:00:00+06:00")
    svc.places.publish("sun", 2024, "ru", 1, for_category="privileged", actor="kg:sun")
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["p"]


def _refer(svc, cid="a1", **kw):
    join(svc, cid, **kw)
    svc.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    [issued] = svc.allocation.process_requests().issued
    return issued


def test_cancelled_referral_returns_the_place_and_drops_that_kindergarten(svc, clock):
    ref = _refer(svc, prefs=("sun", "moon"))
    join(svc, "next", qd="2026-06-01T00:00:00+06:00")
    assert svc.referrals.return_place(key="referral-1:cancel", referral_id=str(ref.referral_id), application_id="a1",
                            at=clock.now, outcome="cancelled", drop_preference=True, actor="parent:1")
    app = svc.views.application("a1")
    assert app["status"] == "queued" and app["preferences"] == ["moon"]
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["next"]
    assert [e["data"]["reason"] for e in events(svc, "place.returned.v1")] == ["cancelled"]
    assert svc.audit.check_register() == []


def test_activity_applied_twice_with_one_key_has_one_effect(svc, clock):
    ref = _refer(svc)
    call = dict(key="referral-1:expired:return_place", referral_id=str(ref.referral_id), application_id="a1",
                at=clock.now, outcome="expired")
    assert svc.referrals.return_place(**call)
    assert not svc.referrals.return_place(**call)
    assert svc.views.places("sun")[0]["free"] == 1
    assert len(events(svc, "place.returned.v1")) == 1


def test_expired_referral_puts_the_child_on_the_stoplist_until_it_ends(svc, clock):
    ref = _refer(svc)
    svc.referrals.return_place(key="k1", referral_id=str(ref.referral_id), application_id="a1", at=clock.now, outcome="expired")
    until = clock.now + timedelta(days=10)
    svc.referrals.put_on_stoplist(key="k2", referral_id=str(ref.referral_id), application_id="a1", at=clock.now, until=until)
    assert svc.allocation.process_requests().issued == []     # the place waits: the only child is paused
    clock.now = until
    assert svc.referrals.lift_due_stoplists() == 1
    assert not svc.referrals.lift_stoplist(key="k3", referral_id=None, application_id="a1", at=until) or \
        svc.views.application("a1")["status"] != "paused"
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["a1"]
    assert len(events(svc, "application.resumed.v1")) == 1


def test_rejected_privilege_returns_the_child_to_the_general_queue_with_its_queue_date(svc, clock):
    ref = _refer(svc, cat="extraordinary", qd="2026-03-01T00:00:00+06:00")
    join(svc, "older", qd="2026-01-01T00:00:00+06:00")
    svc.referrals.return_place(key="k1", referral_id=str(ref.referral_id), application_id="a1", at=clock.now,
                     outcome="privilege_rejected", reason="no certificate")
    svc.referrals.return_to_general_queue(key="k2", referral_id=str(ref.referral_id), application_id="a1", at=clock.now,
                                from_category="extraordinary")
    app = svc.views.application("a1")
    assert app["category"] == "general" and app["claimed_category"] == "extraordinary"
    assert app["queue_date"] == datetime(2026, 2, 28, 18, tzinfo=UTC)
    assert [i.application_id for i in svc.allocation.process_requests().issued] == ["older"]
    assert len(events(svc, "application.returned_to_general_queue.v1")) == 1


def test_enrolment_takes_the_place_for_good(svc, clock):
    ref = _refer(svc)
    svc.referrals.record_enrolment(key="k", referral_id=str(ref.referral_id), application_id="a1", at=clock.now)
    assert svc.views.places("sun")[0] | {} == {"kindergarten": "sun", "cohort": 2024, "language": "ru",
                                          "for_category": None, "free": 0, "held": 0, "enrolled": 1}
    assert svc.views.application("a1")["status"] == "enrolled"
    with pytest.raises(Refused):
        svc.referrals.record_enrolment(key="k-again", referral_id=str(ref.referral_id), application_id="a1", at=clock.now)


def _issued_records(svc, application_id):
    return [{k: r[k] for k in ("at", "actor", "actor_role", "via", "action", "subject", "outcome", "details")}
            for r in svc.audit.trail(f"application:{application_id}") if r["action"] == "referral.issued"]


@pytest.mark.parametrize("cat, needs", [("general", False), ("extraordinary", True)])
def test_the_allocation_announces_each_referral_as_its_workflows_first_step_recorded_it(svc, clock, cat, needs):
    """The allocation's transaction writes each referral's referral.issued
    fact and audit row; they are what the workflow's record_referral
    ("issued") wrote for a referral issued before, field for field."""
    svc.entries.join(JoinQueue(application_id="a1", pin=pin("2024-06-15", 11), surname="Asanov", name="Aibek",
                               category=cat, language="ru", preferences=("sun",), parent_id="parent-7",
                               queue_date=datetime.fromisoformat("2026-01-10T10:00:00+06:00")), actor="parent:1")
    svc.places.publish("sun", 2024, "ru", 1, actor="kg:sun")
    [ref] = svc.allocation.process_requests().issued
    [announced] = events(svc, "referral.issued.v1")
    assert announced["subject"] == f"referral:{ref.referral_id}"
    data = announced["data"]
    assert data["parent_id"] == "parent-7" and data["kindergarten_name"] == "Sun" and data["category"] == cat
    assert data["needs_confirmation"] is needs and data["cohort"] == 2024 and data["language"] == "ru"
    [record] = _issued_records(svc, "a1")
    [pending] = svc.referrals.unstarted()
    assert pending["announced"] is True
    # The old path, for the same referral issued unannounced (by the
    # previous release): what its workflow recorded.
    state = "awaiting_confirmation" if needs else "awaiting_enrolment"
    with svc.sessions() as s:
        deadline = aware(s.scalars(sa.select(Referral.deadline)).one())
        s.execute(sa.update(Referral).values(announced=False))
        s.commit()
    svc.referrals.record_referral(key="k", referral_id=str(ref.referral_id), application_id="a1",
                                  at=pending["issued_at"], event="referral.issued", state=state,
                                  deadline=deadline, needs_confirmation=needs)
    [_, recorded] = events(svc, "referral.issued.v1")
    assert recorded["data"] == data and recorded["time"] == announced["time"]
    assert _issued_records(svc, "a1") == [record, record]


def test_an_announced_referral_is_not_recorded_again_by_a_workflow_started_without_saying_so(svc, clock):
    """A starter of the previous release (during an upgrade) starts the
    workflow of a referral the allocation announced without `announced`:
    its record of the issue changes nothing, so the parent is told once."""
    ref = _refer(svc)
    before = events(svc, "referral.issued.v1"), _issued_records(svc, "a1")
    assert len(before[0]) == 1 and len(before[1]) == 1
    with svc.sessions() as s:
        deadline = aware(s.scalars(sa.select(Referral.deadline)).one())
    assert svc.referrals.record_referral(key="referral-x:issued:record", referral_id=str(ref.referral_id),
                                         application_id="a1", at=clock.now, event="referral.issued",
                                         state="awaiting_enrolment", deadline=deadline)
    assert (events(svc, "referral.issued.v1"), _issued_records(svc, "a1")) == before


def test_a_referral_issued_before_the_allocation_announced_is_recorded_by_its_workflow(svc, clock):
    ref = _refer(svc)
    with svc.sessions() as s:      # as the previous release wrote it
        s.execute(sa.text("UPDATE referrals SET announced = false"))
        s.execute(sa.delete(outbox.table))
        s.commit()
    [pending] = svc.referrals.unstarted()
    assert pending["referral_id"] == str(ref.referral_id) and pending["needs_confirmation"] is False
    assert pending["announced"] is False
    deadline = datetime(2027, 3, 10, 0, 0, tzinfo=UTC)
    svc.referrals.record_referral(key="k", referral_id=str(ref.referral_id), application_id="a1", at=clock.now,
                        event="referral.issued", state="awaiting_enrolment", deadline=deadline)
    [ev] = events(svc, "referral.issued.v1")
    assert ev["data"]["kindergarten_id"] == "sun" and ev["data"]["deadline"].startswith("2027-03-10")
    svc.referrals.mark_started(ref.referral_id)
    assert svc.referrals.unstarted() == []


def test_the_workflow_starters_look_with_nothing_unstarted_is_one_query_and_reads_no_policy(svc, clock):
    """The starter looks four times a second on every queue consumer: at
    rest, one query a look (the policy is read only for referrals to
    start)."""
    ref = _refer(svc)
    engine = svc.sessions.kw["bind"]
    with ran_on(engine) as ran:
        [pending] = svc.referrals.unstarted()
    assert pending["policy"]["confirm_working_days"] > 0 and ran.selects("POLIC")
    svc.referrals.mark_started(ref.referral_id)
    with ran_on(engine) as ran:
        assert svc.referrals.unstarted() == []
    [look] = ran.selects()
    assert "REFERRALS" in look and not any("POLIC" in q for q in ran.statements)


def test_the_allocators_poll_with_nothing_asked_for_or_marked_is_one_read_and_marked_positions_still_go_out(svc):
    """The allocator loop asks four times a second on every queue consumer:
    at rest one transaction a poll (publishing the positions opened a
    write transaction of its own to find nothing marked)."""
    join(svc, "a1")
    svc.allocation.process_requests()
    with ran_on(svc.sessions.kw["bind"]) as ran:
        assert svc.allocation.process_requests() is None
    assert ran.begins == 1
    before = len(events(svc, "application.position_changed.v1"))
    join(svc, "a2", qd="2026-02-10T10:00:00+06:00")     # marks its pool
    assert len(events(svc, "application.position_changed.v1")) == before
    svc.allocation.process_requests()
    assert len(events(svc, "application.position_changed.v1")) == before + 1


def test_the_applications_referral_shows_the_state_window_end_and_extension_its_workflow_recorded(svc, clock):
    """What the cabinet reads of a referral (services/gateway/referrals.py
    `standing`) is the queue's record, kept by the workflow's facts."""
    ref = _refer(svc, cat="extraordinary")
    issued = svc.views.application("a1")["referral"]
    assert (issued["state"], issued["extended"]) == ("awaiting_confirmation", False) and issued["deadline"]
    extended_to = issued["deadline"] + timedelta(days=30)
    svc.referrals.record_referral(key="referral-x:extended:record", referral_id=str(ref.referral_id),
                                  application_id="a1", at=clock.now, event="referral.extended",
                                  state="awaiting_confirmation", deadline=extended_to)
    after = svc.views.application("a1")["referral"]
    assert (after["state"], after["deadline"], after["extended"]) == ("awaiting_confirmation", extended_to, True)
    assert svc.views.applications_many(["a1"])["a1"]["referral"] == after


def test_position_explains_who_is_ahead_and_why(svc):
    join(svc, "me", qd="2026-03-01T00:00:00+06:00", prefs=("sun", "moon"))
    join(svc, "ext", cat="extraordinary", qd="2026-09-01T00:00:00+06:00", prefs=("sun",))
    join(svc, "old", qd="2026-01-01T00:00:00+06:00", prefs=("moon", "sun"))
    join(svc, "other_year", born="2023-01-01", qd="2020-01-01T00:00:00+06:00", prefs=("sun",))
    [sun, moon] = svc.views.positions("me")
    assert (sun.kindergarten, sun.position, sun.ahead_by_category, sun.ahead_same_category_earlier) == \
        ("sun", 3, {"extraordinary": 1}, 1)
    assert (moon.kindergarten, moon.position) == ("moon", 2)


def test_public_queue_masks_names_and_shows_queue_date_and_category(svc):
    join(svc, "b", qd="2026-02-01T00:00:00+06:00")
    join(svc, "a", cat="privileged", qd="2026-05-01T00:00:00+06:00")
    q = svc.views.public_queue("sun", 2024, "ru")
    assert [(e["number"], e["child"], e["category"]) for e in q["entries"]] == [
        (1, "A***** A.", "privileged"), (2, "A***** B.", "general")]
    assert "pin" not in json.dumps(q, default=str)


def test_policy_change_is_versioned_audited_and_refuses_bad_values(svc):
    policy, version = svc.policy.change({"stoplist_days": 14}, actor="admin:1", reason="city decree 12")
    assert policy.stoplist_days == 14
    [entry] = [e for e in svc.audit.trail() if e["action"] == "policy.changed"]
    assert entry["details"]["changes"] == {"stoplist_days": {"from": 10, "to": 14}}
    with pytest.raises(Refused) as exc:
        svc.policy.change({"stoplist_days": -1}, actor="admin:1", reason="typo")
    assert exc.value.field == "policy.stoplist_days"


def test_every_run_replays_from_its_recorded_inputs(svc, clock):
    for i in range(6):
        join(svc, f"c{i}", qd=f"2026-01-{1 + i:02d}T10:00:00+06:00", prefs=("sun", "moon")[: 1 + i % 2])
    svc.places.publish("sun", 2024, "ru", 2, actor="kg")
    svc.places.publish("moon", 2024, "ru", 1, actor="kg")
    svc.allocation.process_requests()
    clock.advance(days=1)
    svc.places.publish("moon", 2024, "ru", 1, actor="kg")
    svc.allocation.process_requests()
    reports = svc.audit.replay()
    assert reports and all(r["matches"] for r in reports)
    assert sum(r["allocations"] for r in reports) == 4


def test_replay_detects_a_tampered_allocation_record(svc):
    join(svc, "a1", qd="2026-01-01T10:00:00+06:00")
    join(svc, "a2", qd="2026-01-02T10:00:00+06:00")
    svc.places.publish("sun", 2024, "ru", 1, actor="kg")
    run = svc.allocation.process_requests()
    with svc.sessions.begin() as s:
        s.execute(sa.text("UPDATE allocation_audit SET application_id = 'a2'"))
    [report] = svc.audit.replay([run.run_id])
    assert not report["matches"] and any("a2" in p for p in report["problems"])


def test_unknown_application_is_not_found_naming_the_field(svc):
    with pytest.raises(NotFound) as exc:
        svc.views.application("nope")
    assert exc.value.field == "application_id"


def test_replay_command_proves_every_run_matches_and_fails_on_a_tampered_one(svc, capsys):
    from services.queue import cli

    join(svc, "a1", qd="2026-01-01T10:00:00+06:00")
    join(svc, "a2", qd="2026-01-02T10:00:00+06:00")
    svc.places.publish("sun", 2024, "ru", 1, actor="kg")
    svc.allocation.process_requests()
    url = str(svc.sessions.kw["bind"].url)
    assert cli.main(["--database-url", url]) == 0
    assert "matches" in capsys.readouterr().out
    with svc.sessions.begin() as s:
        s.execute(sa.text("UPDATE allocation_audit SET preference_index = 1"))
    assert cli.main(["--database-url", url]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_submitted_application_joins_and_a_second_one_for_the_pin_is_refused_with_an_event(svc):
    from kezek.events import new_event

    def submitted(app_id):
        return new_event("application.submitted.v1", f"application:{app_id}", {
            "application_id": app_id, "parent_id": f"p-{app_id}", "country": "KG", "child_pin": "21506202400011",
            "child_birth_date": "2024-06-15", "child_surname": "Asanov", "child_name": "Aibek",
            "category": "general", "queue_date": "2026-01-10T10:00:00+06:00", "language": "ru",
            "preferences": ["sun"], "locale": "ru"}, source="registration")
    for app_id in ("r1", "r2"):
        with svc.sessions() as s, s.begin():
            svc.entries.join_submitted(s, submitted(app_id))
    assert svc.views.application("r1")["queue_date"] == datetime(2026, 1, 10, 4, tzinfo=UTC)
    with pytest.raises(NotFound):
        svc.views.application("r2")
    [refused] = events(svc, "application.refused.v1")
    assert refused["data"]["application_id"] == "r2" and refused["data"]["field"] == "pin"


def test_imported_live_referral_holds_its_place_once_and_waits_for_its_workflow(svc, clock):
    join(svc, "old-1", prefs=("sun", "moon"))
    call = dict(referral_id="balalyk-r1", application_id="old-1", kindergarten="moon", cohort=2024, language="ru",
                category="general", for_category=None, state="awaiting_enrolment", issued_at=clock.now - timedelta(days=2),
                deadline=clock.now + timedelta(days=5), needs_confirmation=False, actor="import:balalyk")
    assert svc.imports.referral(**call)
    assert not svc.imports.referral(**call)
    # Once, and as an import (no referral.issued: the parent heard of it from the old portal).
    [imported] = events(svc, "referral.imported.v1")
    assert not events(svc, "referral.issued.v1")
    assert {k: imported["data"][k] for k in ("external_id", "application_id", "kindergarten_id", "state",
                                              "child_surname", "child_birth_date")} == {
        "external_id": "balalyk-r1", "application_id": "old-1", "kindergarten_id": "moon",
        "state": "awaiting_enrolment", "child_surname": "Asanov", "child_birth_date": "2024-06-15"}
    app = svc.views.application("old-1")
    assert app["status"] == "referred" and app["referral"]["kindergarten"] == "moon"
    assert [(p["kindergarten"], p["free"], p["held"]) for p in svc.views.places()] == [("moon", 0, 1)]
    [pending] = svc.referrals.unstarted()
    assert pending["application_id"] == "old-1" and pending["issued_at"] == clock.now - timedelta(days=2)
    assert pending["resume"] == {"state": "awaiting_enrolment", "deadline": clock.now + timedelta(days=5),
                                 "extended": False, "confirmed_at": None}
    assert svc.audit.check_register() == [] and all(r["matches"] for r in svc.audit.replay())


def test_imported_referral_is_resumed_with_its_recorded_deadline_and_used_extension(svc, clock):
    from services.queue.activities import referral_input

    join(svc, "old-2", cat="extraordinary", prefs=("sun",))
    deadline = clock.now + timedelta(days=20)
    assert svc.imports.referral(
        referral_id="balalyk-r2", application_id="old-2", kindergarten="sun", cohort=2024, language="ru",
        category="extraordinary", for_category=None, state="awaiting_confirmation",
        issued_at=clock.now - timedelta(days=12), deadline=deadline, needs_confirmation=True, extended=True,
        actor="import:balalyk")
    [pending] = svc.referrals.unstarted()
    inp = referral_input(pending)
    assert inp.needs_confirmation and inp.resume is not None
    assert (inp.resume.state, inp.resume.deadline, inp.resume.extended) == ("awaiting_confirmation", deadline, True)


def test_imported_referral_without_a_privilege_to_confirm_cannot_wait_for_confirmation(svc, clock):
    join(svc, "old-3", prefs=("sun",))
    with pytest.raises(Refused, match="confirmation window"):
        svc.imports.referral(
            referral_id="balalyk-r3", application_id="old-3", kindergarten="sun", cohort=2024, language="ru",
            category="general", for_category=None, state="awaiting_confirmation",
            issued_at=clock.now - timedelta(days=1), deadline=clock.now + timedelta(days=5), needs_confirmation=False,
            actor="import:balalyk")
    assert svc.views.application("old-3")["status"] == "queued" and svc.views.places() == []


def cmd(cid, *, serial, cat="general", prefs=("sun",), qd="2026-01-10T10:00:00+06:00", born="2024-06-15"):
    return JoinQueue(application_id=cid, pin=pin(born, serial), surname="Asanov", name=cid.title(), category=cat,
                     language="ru", preferences=tuple(prefs), queue_date=datetime.fromisoformat(qd))


def table_counts(svc) -> dict[str, int]:
    with svc.sessions() as s:
        return {t: s.scalar(sa.text(f"SELECT count(*) FROM {t}"))
                for t in ("applications", "outbox", "audit_trail", "allocation_requests")}


def test_batch_join_refuses_rows_one_by_one_with_their_reason_and_queues_the_rest(svc):
    from services.queue.usecases.imports import Joined

    join(svc, "already", serial=1)
    before = table_counts(svc)
    got = svc.imports.join_many([
        cmd("b1", serial=2, qd="2025-05-05T09:30:00.123456+06:00"),
        cmd("b2", serial=1),                      # the PIN of a child already in the queue
        cmd("b3", serial=3, cat="veterans"),
        cmd("b4", serial=4, prefs=("nowhere",)),
        cmd("b5", serial=2),                      # the same child as b1, in the same batch
        cmd("already", serial=1),                 # the same entry again
        cmd("b6", serial=6, cat="extraordinary", prefs=("moon", "sun")),
    ], actor="import:balalyk")
    assert got[0] == Joined("b1", True) and got[6] == Joined("b6", True) and got[5] == Joined("already", False)
    assert [g.field for g in got[1:5]] == ["pin", "category", "preferences.0", "pin"]
    assert "one entry per child" in got[1].message and "one entry per child" in got[4].message
    assert svc.views.application("b1")["queue_date"] == datetime(2025, 5, 5, 3, 30, 0, 123456, tzinfo=UTC)
    after = table_counts(svc)
    assert after["applications"] - before["applications"] == 2
    assert after["audit_trail"] - before["audit_trail"] == 2 and after["allocation_requests"] - before["allocation_requests"] == 1
    queued = [e["data"]["application_id"] for e in events(svc, "application.queued.v1")]
    assert queued == ["already", "b1", "b6"]


def test_an_entry_joined_by_an_import_says_so_in_its_queued_event(svc):
    """The public projector names such a child by its entry at once: no
    registration event with its PIN ever comes for it."""
    join(svc, "one-by-one", serial=51)
    svc.imports.join_many([cmd("moved-in", serial=52)], actor="import:balalyk")
    imported = {e["data"]["application_id"]: e["data"].get("imported") for e in events(svc, "application.queued.v1")}
    assert imported == {"one-by-one": None, "moved-in": True}


def test_batch_join_of_entries_already_there_changes_nothing(svc):
    batch = [cmd(f"c{i}", serial=10 + i) for i in range(5)]
    assert all(j.created for j in svc.imports.join_many(batch, actor="import:balalyk"))
    before = table_counts(svc)
    assert not any(j.created for j in svc.imports.join_many(batch, actor="import:balalyk"))
    assert table_counts(svc) == before


def test_batch_join_dry_run_checks_every_row_and_writes_nothing(svc):
    before = table_counts(svc)
    got = svc.imports.join_many([cmd("d1", serial=21), cmd("d2", serial=22, cat="veterans")], actor="import:x",
                              dry_run=True)
    assert got[0].created and isinstance(got[1], Refused)
    assert table_counts(svc) == before


def test_batch_join_is_written_whole_or_not_at_all(svc, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")
    from services.queue.usecases.work import UnitOfWork
    monkeypatch.setattr(UnitOfWork, "request_allocation", fail)
    before = table_counts(svc)
    with pytest.raises(RuntimeError):
        svc.imports.join_many([cmd("e1", serial=31), cmd("e2", serial=32)], actor="import:x")
    assert table_counts(svc) == before


def test_batch_referral_import_refuses_items_one_by_one_and_imports_each_once(svc, clock):
    from services.queue.domain import ImportReferral

    join(svc, "f1", prefs=("sun",), serial=41)
    join(svc, "f2", prefs=("moon",), serial=42)

    def item(rid, app, **kw):
        fields = dict(referral_id=rid, application_id=app, kindergarten="sun", cohort=2024, language="ru",
                      category="general", for_category=None, state="awaiting_enrolment",
                      issued_at=clock.now - timedelta(days=1), deadline=clock.now + timedelta(days=6),
                      needs_confirmation=False)
        return ImportReferral(**{**fields, **kw})
    batch = [item("r1", "f1"), item("r2", "nobody"), item("r3", "f1"), item("r4", "f2", state="enrolled"),
             item("r5", "f2", kindergarten="moon", language="ky")]
    got = svc.imports.referrals_many(batch, actor="import:balalyk")
    assert got[0] is True
    assert [g.field for g in got[1:]] == ["application_id", "application_id", "state", "cohort"]
    assert "the entry is referred" in got[2].message
    assert svc.imports.referrals_many(batch[:1], actor="import:balalyk") == [False]
    assert [(p["kindergarten"], p["held"]) for p in svc.views.places()] == [("sun", 1)]
    assert svc.views.application("f2")["status"] == "queued" and svc.audit.check_register() == []


def test_batch_publication_publishes_each_pool_with_its_event_and_refuses_bad_ones(svc):
    from services.queue.domain import PublishPlaces

    svc.places.publish("sun", 2024, "ru", 1, actor="kindergarten:sun")
    got = svc.imports.publish_places_many([
        PublishPlaces("sun", 2024, "ru", 2), PublishPlaces("nowhere", 2024, "ru", 1),
        PublishPlaces("moon", 2023, "ky", 3), PublishPlaces("moon", 2024, "en", 1),
        PublishPlaces("sun", 2024, "ru", 1, for_category="extraordinary")], actor="import:balalyk")
    assert got[0] is True and got[2] is True and got[4] is True
    assert (got[1].field, got[3].field) == ("kindergarten", "language")
    assert sorted((p["kindergarten"], p["cohort"], p["language"], p["for_category"] or "", p["free"])
                  for p in svc.views.places()) == [
        ("moon", 2023, "ky", "", 3), ("sun", 2024, "ru", "", 3), ("sun", 2024, "ru", "extraordinary", 1)]
    published = [(e["data"]["kindergarten_id"], e["data"]["count"], e["data"]["free"])
                 for e in events(svc, "place.published.v1")]
    assert published == [("sun", 1, 1), ("sun", 2, 3), ("moon", 3, 3), ("sun", 1, 1)]
    assert svc.audit.check_register() == []


def test_the_audit_log_moves_to_the_one_audit_model_keeping_every_row(tmp_path):
    from kezek.migrations import alembic_config
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade("queue", url, "queue_0007_positions")
    engine = make_engine(url)
    with engine.begin() as c:
        for actor, action in (("parent:7", "application.removed"), ("admin:1", "policy.changed"),
                              ("system:allocator", "allocation.run")):
            c.execute(sa.text("INSERT INTO audit_log (at, actor, action, subject, details) "
                              "VALUES ('2026-01-01 00:00:00', :a, :n, 's', '{\"k\": 1}')"), {"a": actor, "n": action})
    upgrade("queue", url)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT id, actor, actor_role, action, kind, outcome, details FROM audit_trail "
                                 "ORDER BY id")).all()
    assert [(r.id, r.actor, r.actor_role, r.kind, r.outcome) for r in rows] == [
        (1, "parent:7", "parent", "act", "ok"), (2, "admin:1", "admin", "act", "ok"),
        (3, "system:allocator", "service", "act", "ok")]
    assert json.loads(rows[0].details) == {"k": 1}
    command.downgrade(alembic_config("queue", url), "queue_0007_positions")
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM audit_log")).scalar() == 3
    engine.dispose()
