"""Kindergartens and district offices in the queue (issue 19): a child who
leaves frees the place at once, a kindergarten closes only when nothing is
held or taken, the schedule goes by birth year and category, the figures,
and who may do each through the API (a kindergarten its own, a district
office its district)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.queue.domain import JoinQueue, NotFound, Refused
from services.queue.models import audit_trail, outbox
from services.queue.store import invariants
from tests.builders import Clock, kindergarten, queue_api, sqlite_queue

LENINSKY, OKTYABRSKY = "41711210000000", "41711220000000"


@pytest.fixture
def clock():
    return Clock(datetime(2027, 3, 1, 4, 0, tzinfo=UTC))  # 10:00 in Bishkek


@pytest.fixture
def svc(tmp_path, clock):
    with sqlite_queue(tmp_path, clock, [kindergarten(kid, district=district, address="1", languages=["ru", "ky"])
                                        for kid, district in (("sun", LENINSKY), ("moon", LENINSKY),
                                                              ("star", OKTYABRSKY))]) as service:
        yield service


@pytest.fixture
def api(svc, tmp_path):
    with queue_api(tmp_path, svc) as c:
        yield c


def serial_of(cid: str) -> int:
    return sum(map(ord, cid)) * 7 % 99999


def join(svc, cid, *, qd="2026-01-10T10:00:00+06:00", prefs=("sun",), serial=None, born="2024-06-15", lang="ru",
         cat="general"):
    y, m, d = born.split("-")
    serial = serial if serial is not None else serial_of(cid)
    return svc.entries.join(JoinQueue(
        application_id=cid, pin=f"2{d}{m}{y}{serial:05d}", surname="Asanov", name=cid.title(), category=cat,
        language=lang, preferences=tuple(prefs), queue_date=datetime.fromisoformat(qd)), actor="parent:1")


def enrolled_child(svc, clock, cid="a1", kg="sun"):
    join(svc, cid, prefs=(kg,))
    svc.places.publish(kg, 2024, "ru", 1, actor="kindergarten:1")
    [issued] = svc.allocation.process_requests().issued
    svc.referrals.record_enrolment(key=f"{cid}:enrol", referral_id=str(issued.referral_id), application_id=cid,
                                   at=clock.now)
    return issued


def events(svc, type_):
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.type, outbox.table.c.payload).order_by(outbox.table.c.seq)).all()
    return [json.loads(p)["data"] for t, p in rows if t == type_]


def trail(svc, action):
    with svc.sessions() as s:
        return [r for r in audit_trail.trail(s, limit=10_000) if r["action"] == action]


def kg_staff(api, kg="sun", staff_id="k1"):
    return api.as_.staff(staff_id, "kindergarten", kindergarten=kg, district=LENINSKY)


def officer(api, district=LENINSKY):
    return api.as_.staff("d1", "district", district=district)


# ------------------------------------------------------------ a child leaves


def test_child_who_leaves_frees_the_place_and_the_next_child_in_line_gets_it(svc, clock):
    enrolled_child(svc, clock)
    join(svc, "next", qd="2026-05-01T10:00:00+06:00", serial=2)
    assert svc.allocation.process_requests().issued == []     # nothing free while the place is taken
    left = svc.leaving.leave("a1", actor="kindergarten:k1", kindergarten="sun", reason="moved to Osh")
    assert left["status"] == "left" and left["left_at"] == clock.now and left["referral"] is None
    [freed] = events(svc, "place.freed.v1")
    assert freed["kindergarten_id"] == "sun" and freed["free"] == 1 and freed["cohort"] == 2024
    [gone] = events(svc, "application.left.v1")
    assert gone["application_id"] == "a1" and gone["reason"] == "moved to Osh"
    [issued] = svc.allocation.process_requests().issued
    assert issued.application_id == "next"
    assert svc.views.places("sun")[0] | {} == {"kindergarten": "sun", "cohort": 2024, "language": "ru",
                                               "for_category": None, "free": 0, "held": 1, "enrolled": 0}
    with svc.sessions() as s:
        assert invariants.problems(s) == []
    assert [r["actor"] for r in trail(svc, "application.left")] == ["kindergarten:k1"]


def test_only_an_enrolled_child_can_leave(svc, clock):
    join(svc, "waiting")
    with pytest.raises(Refused) as exc:
        svc.leaving.leave("waiting", actor="admin:1")
    assert exc.value.code == "leave_not_enrolled" and exc.value.params["status"] == "queued"
    enrolled_child(svc, clock, "a1")
    svc.leaving.leave("a1", actor="admin:1")
    with pytest.raises(Refused) as again:
        svc.leaving.leave("a1", actor="admin:1", kindergarten="sun")
    assert again.value.code == "leave_not_enrolled" and again.value.params["status"] == "left"


def test_a_kindergarten_cannot_record_the_leaving_of_a_child_it_never_had(svc, clock):
    enrolled_child(svc, clock, "a1", kg="sun")
    with pytest.raises(NotFound) as exc:
        svc.leaving.leave("a1", actor="kindergarten:k2", kindergarten="moon")
    assert exc.value.code == "child_not_enrolled_here"
    assert svc.views.application("a1")["status"] == "enrolled"


def test_a_child_who_left_may_join_the_queue_again_with_a_new_queue_date(svc, clock):
    enrolled_child(svc, clock, "a1")
    with pytest.raises(Refused) as taken:
        join(svc, "a1-twin", serial=serial_of("a1"))        # enrolled: one entry per child
    assert taken.value.code == "pin_taken"
    svc.leaving.leave("a1", actor="admin:1")
    clock.now += timedelta(days=3)
    again = svc.views.application(join(svc, "a1-again", serial=serial_of("a1"), qd=clock.now.isoformat()))
    assert again["status"] == "queued" and again["queue_date"] == clock.now


# ------------------------------------------------------------ closing


def test_a_kindergarten_closes_only_when_nothing_is_held_or_taken_there(svc, clock):
    enrolled_child(svc, clock, "a1", kg="sun")
    with pytest.raises(Refused) as exc:
        svc.kindergartens.close("sun", actor="district:d1")
    assert exc.value.code == "kindergarten_not_empty" and exc.value.params == {
        "kindergarten": "sun", "held": 0, "enrolled": 1}
    assert svc.kindergartens.get("sun")["closed_at"] is None


def test_closing_withdraws_free_places_calls_off_the_schedule_and_leaves_the_preferences(svc, clock):
    join(svc, "a1", prefs=("moon", "sun"), born="2023-06-15")
    svc.places.publish("moon", 2024, "ru", 3, actor="district:d1")
    svc.places.publish("moon", 2024, "ky", 2, actor="district:d1", publish_at=clock.now + timedelta(days=2))
    closed = svc.kindergartens.close("moon", actor="district:d1", reason="the building is condemned")
    assert closed["closed_at"] == clock.now
    assert [p["free"] for p in svc.views.places("moon")] == [0]
    assert svc.views.scheduled_publications(kindergarten="moon") == []
    assert [e["count"] for e in events(svc, "place.withdrawn.v1")] == [3]
    assert svc.views.application("a1")["preferences"] == ["sun"]
    [audit] = trail(svc, "kindergarten.closed")
    assert audit["details"]["withdrawn"] == 3 and audit["details"]["preferences_dropped"] == 1
    clock.now += timedelta(days=3)
    assert svc.places.publish_due() == 0                    # the called-off publication never comes


def test_a_closed_kindergarten_takes_no_places_no_preferences_and_no_changes(svc):
    svc.kindergartens.close("moon", actor="district:d1")
    with pytest.raises(Refused) as publish:
        svc.places.publish("moon", 2024, "ru", 1, actor="district:d1")
    assert publish.value.code == "kindergarten_closed"
    with pytest.raises(Refused) as listed:
        join(svc, "a1", prefs=("moon",))
    assert listed.value.field == "preferences.0"
    with pytest.raises(Refused) as edit:
        svc.kindergartens.save({"id": "moon", "name": "Moon 2"}, actor="district:d1")
    assert edit.value.code == "kindergarten_closed"
    assert "moon" not in [k["id"] for k in svc.kindergartens.list(LENINSKY)]
    assert "moon" in [k["id"] for k in svc.kindergartens.list(LENINSKY, closed=True)]


def test_a_kindergarten_keeps_teaching_in_the_languages_it_has_places_in(svc):
    svc.places.publish("sun", 2024, "ky", 1, actor="district:d1")
    with pytest.raises(Refused) as exc:
        svc.kindergartens.save({"id": "sun", "languages": ["ru"]}, actor="district:d1")
    assert exc.value.code == "kindergarten_language_in_use" and exc.value.field == "languages"
    svc.kindergartens.save({"id": "sun", "languages": ["ky"]}, actor="district:d1")


# ------------------------------------------------------------ the schedule


def test_a_scheduled_publication_can_be_called_off_only_before_its_moment(svc, clock):
    later = svc.places.publish("sun", 2024, "ru", 2, actor="district:d1", publish_at=clock.now + timedelta(hours=1))
    now = svc.places.publish("sun", 2024, "ru", 1, actor="district:d1")
    cancelled = svc.places.cancel(later["publication"], actor="district:d1")
    assert cancelled["status"] == "cancelled"
    with pytest.raises(Refused) as exc:
        svc.places.cancel(now["publication"], actor="district:d1")
    assert exc.value.code == "publication_not_scheduled" and exc.value.params["status"] == "published"
    clock.now += timedelta(hours=2)
    assert svc.places.publish_due() == 0
    assert svc.views.places("sun")[0]["free"] == 1


def test_the_schedule_lists_older_birth_years_and_the_extraordinary_right_first_at_one_moment(svc, clock):
    at = clock.now + timedelta(days=1)
    for kg, cohort, cat in (("sun", 2024, None), ("moon", 2023, None), ("sun", 2024, "extraordinary"),
                            ("star", 2022, "privileged")):
        svc.places.publish(kg, cohort, "ru", 1, actor="admin:1", publish_at=at, for_category=cat)
    svc.places.publish("sun", 2021, "ru", 1, actor="admin:1", publish_at=at + timedelta(hours=1))
    order = [(p["cohort"], p["for_category"]) for p in svc.views.scheduled_publications()]
    assert order == [(2022, "privileged"), (2023, None), (2024, "extraordinary"), (2024, None), (2021, None)]
    assert [p["kindergarten"] for p in svc.views.scheduled_publications(district=OKTYABRSKY)] == ["star"]


# ------------------------------------------------------------ figures


def test_district_figures_count_the_waiting_the_register_and_the_month_s_referrals(svc, clock):
    join(svc, "a1", prefs=("sun",), serial=1, qd="2027-02-19T10:00:00+06:00")
    join(svc, "a2", prefs=("sun", "star"), serial=2, qd="2027-02-09T10:00:00+06:00")
    join(svc, "a3", prefs=("star",), serial=3, lang="ky", qd="2027-01-30T10:00:00+06:00")
    svc.places.publish("sun", 2024, "ru", 1, actor="district:d1")
    [issued] = svc.allocation.process_requests().issued
    svc.referrals.return_place(key="k", referral_id=str(issued.referral_id), application_id=issued.application_id,
                               at=clock.now, outcome="cancelled", drop_preference=True)
    leninsky = svc.figures.of(LENINSKY)
    assert leninsky["month"] == "2027-03" and leninsky["kindergartens"] == 2
    assert leninsky["waiting"] == [{"cohort": 2024, "language": "ru", "children": 1}]
    assert leninsky["referrals"] | {} == {"issued": 1, "enrolled": 0, "expired": 0, "cancelled": 1, "rejected": 0,
                                          "left": 0}
    assert leninsky["places"] == {"free": 1, "held": 0, "taken": 0, "published": 1, "withdrawn": 0}
    overview = svc.figures.overview()
    assert overview["total"]["waiting_total"] == 3 and overview["total"]["median_days_waiting"] == 20.0
    assert [d["district"] for d in overview["districts"]] == [LENINSKY, OKTYABRSKY]
    assert svc.figures.of(LENINSKY, "2027-02")["referrals"]["issued"] == 0


# ------------------------------------------------------------ through the API


def test_kindergarten_staff_see_their_referrals_nearest_deadline_first_and_a_look_at_each_child_is_audited(
        api, svc, clock):
    join(svc, "a1", serial=1)
    join(svc, "a2", serial=2, qd="2026-02-10T10:00:00+06:00")
    svc.places.publish("sun", 2024, "ru", 2, actor="admin:1")
    refs = svc.allocation.process_requests().issued
    # Their enrolment windows end on different days (the workflow records
    # the new deadline with the privilege confirmed): the later issued first.
    for i, ref in enumerate(refs):
        svc.referrals.record_referral(key=f"k{i}", referral_id=str(ref.referral_id),
                                      application_id=ref.application_id, at=clock.now,
                                      event="referral.privilege_confirmed",
                                      state="awaiting_enrolment", deadline=clock.now + timedelta(days=9 - i))
    r = api.get("/api/v1/kindergartens/sun/referrals", headers=kg_staff(api))
    assert r.status_code == 200, r.text
    assert [x["application_id"] for x in r.json()] == ["a2", "a1"]
    assert r.json()[0]["child"] == "Asanov A2" and r.json()[0]["pin"]
    looks = trail(svc, "kindergarten.referrals_viewed")
    assert sorted(x["subject"] for x in looks) == ["application:a1", "application:a2"]
    assert all(x["kind"] == "look" and x["actor"] == "staff:k1" for x in looks)


def test_a_clerk_of_one_kindergarten_can_neither_see_nor_act_on_another_s(api, svc, clock):
    issued = enrolled_child(svc, clock, "a1", kg="sun")
    other = kg_staff(api, kg="moon", staff_id="k2")
    assert api.get("/api/v1/kindergartens/sun/referrals", headers=other).status_code == 404
    assert api.get("/api/v1/kindergartens/sun/children", headers=other).status_code == 404
    assert api.get(f"/api/v1/kindergartens/sun/referrals/{issued.referral_id}", headers=other).status_code == 404
    r = api.post("/api/v1/kindergartens/sun/children/a1/leaving", headers=other, json={})
    assert r.status_code == 404
    r = api.post("/api/v1/kindergartens/moon/children/a1/leaving", headers=other, json={})
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "child_not_enrolled_here"
    assert svc.views.application("a1")["status"] == "enrolled"
    r = api.post("/api/v1/kindergartens/sun/children/a1/leaving", headers=kg_staff(api), json={"reason": "moved"})
    assert r.status_code == 200 and r.json()["status"] == "left"
    [entry] = trail(svc, "application.left")
    assert entry["actor"] == "staff:k1" and entry["via"] == "verification"


def test_a_district_office_manages_the_kindergartens_of_its_own_district_only(api, svc):
    body = {"name": "New", "district": LENINSKY, "address": "2", "languages": ["ky"]}
    assert api.put("/api/v1/kindergartens/new-1", headers=officer(api), json=body).status_code == 200
    r = api.put("/api/v1/kindergartens/new-2", headers=officer(api), json={**body, "district": OKTYABRSKY})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "district_not_yours"
    r = api.put("/api/v1/kindergartens/star", headers=officer(api), json={**body, "name": "Taken over"})
    assert r.status_code == 404
    assert api.post("/api/v1/kindergartens/star/closure", headers=officer(api), json={}).status_code == 404
    assert api.put("/api/v1/kindergartens/new-3", headers=kg_staff(api), json=body).status_code == 403
    r = api.post("/api/v1/kindergartens/new-1/closure", headers=officer(api), json={"reason": "merged"})
    assert r.status_code == 200 and r.json()["closed_at"]


def test_the_schedule_and_its_cancellation_through_the_api(api, svc, clock):
    later = (clock.now + timedelta(days=1)).isoformat()
    r = api.post("/api/v1/kindergartens/sun/places", headers=officer(api),
                 json={"cohort": 2023, "language": "ky", "count": 2, "publish_at": later})
    assert r.status_code == 201 and r.json()["published"] is False
    pub = r.json()["publication"]
    [listed] = api.get("/api/v1/places/scheduled", params={"district": LENINSKY},
                       headers=officer(api)).json()
    assert listed["publication"] == pub and listed["status"] == "scheduled"
    assert api.post(f"/api/v1/publications/{pub}/cancellation", headers=officer(api, OKTYABRSKY)).status_code == 404
    r = api.post(f"/api/v1/publications/{pub}/cancellation", headers=officer(api))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/publications/{pub}/cancellation", headers=officer(api)).status_code == 409


def test_published_figures_need_no_sign_in(api, svc):
    join(svc, "a1")
    r = api.get("/api/v1/public/figures")
    assert r.status_code == 200 and r.json()["total"]["waiting_total"] == 1
    r = api.get(f"/api/v1/public/figures/{LENINSKY}", params={"month": "2027-02"})
    assert r.status_code == 200 and r.json()["district"] == LENINSKY and r.json()["month"] == "2027-02"
    assert api.get("/api/v1/public/figures", params={"month": "2027-13"}).status_code == 422
    districts = api.get("/api/v1/districts", headers=officer(api)).json()
    assert districts == [{"district": LENINSKY, "kindergartens": 2, "open": 2},
                         {"district": OKTYABRSKY, "kindergartens": 1, "open": 1}]


def test_the_public_list_shows_the_cabinet_s_position_beside_the_number_in_its_language(svc):
    join(svc, "ru-first", lang="ru", qd="2026-01-01T10:00:00+06:00")
    join(svc, "ky-second", lang="ky", qd="2026-02-01T10:00:00+06:00")
    join(svc, "ru-third", lang="ru", qd="2026-03-01T10:00:00+06:00")
    public = svc.views.public_queue("sun", 2024, "ru")
    assert [(e["number"], e["position"]) for e in public["entries"]] == [(1, 1), (2, 3)]
    [cabinet] = svc.views.positions("ru-third")
    assert cabinet.position == public["entries"][1]["position"] == 3
