"""The cabinet's read model (services/gateway/readmodel.py): once the events
of what changed are consumed, in any order and some of them twice (the
consumers are at least once), `/api/v1/me` from the read model is what the
services say (the fan-out); a change the gateway made itself shows at once;
and the counters it keeps are bumped by every event that may change a
cabinet."""
from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kezek.events import new_event
from kezek.trust import parent_principal
from services.gateway import cabinet, history, readmodel, vouchers
from tests.fakes.gateway import Stack, payloads

CHILD = {"surname": "Асанов", "name": "Айбек"}
PARENT = {
    "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
    "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
    "address": {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
                "street": "улица Киевская", "house": "12"},
    "phone": "+996 555 123 456",
}
CONFIRM = {"category": "general", "language": "ru", "preferences": ["bsk-12", "bsk-7"], "agreement": True}
PASSWORD = "a long enough password"
SERIAL = itertools.count(100)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from datetime import timedelta

    from services.registration import limits

    # A family adds children one after another here: the minute between two
    # codes to one address is not this file's concern.
    mp = pytest.MonkeyPatch()
    mp.setattr(limits, "CODE_RESEND_AFTER", timedelta(0))
    yield Stack(tmp_path_factory.mktemp("rm"), rate_limit_per_minute=100_000, cabinet_snapshot_seconds=3600,
                 codes_per_address_per_hour=10_000)
    mp.undo()


@pytest.fixture(scope="module")
def api(stack):
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        yield c


def submit(api, stack, email: str, category: str = "general") -> tuple[str, bool]:
    """One more child of the family with this e-mail; the queue takes it in."""
    r = api.post("/api/v1/drafts", json={"locale": "en"})
    t = r.json()["draft"]
    pin = f"2150620240{next(SERIAL):04d}"
    assert api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": pin}).status_code == 200
    assert api.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": email}).status_code == 200
    assert api.post(f"/api/v1/drafts/{t}/email-code").status_code == 202
    assert api.post(f"/api/v1/drafts/{t}/email-code/verify",
                    json={"code": stack.last_code(email)}).status_code == 200
    r = api.post(f"/api/v1/drafts/{t}/submit", json={**CONFIRM, "category": category})
    assert r.status_code == 201, r.text
    stack.queue.feed_from_outbox(stack.registration.state.engine)
    return r.json()["application_id"], r.json()["new_account"]


def family(api, stack) -> tuple[dict, str]:
    email = f"family-{next(SERIAL)}@example.kg"
    app, new = submit(api, stack, email, category="voucher")
    assert new
    token = stack.last_activation_token(email)
    assert api.post("/api/v1/activation", json={"token": token, "password": PASSWORD}).status_code == 200
    r = api.post("/api/v1/sessions", json={"login": email, "password": PASSWORD})
    return {"authorization": f"Bearer {r.json()['token']}", "email": email}, app


def submitted_event(stack, application_id: str):
    """Registration's own event of this application, from its outbox."""
    for p in payloads(stack.registration.state.engine, "application.submitted.v1"):
        if json.loads(p)["data"]["application_id"] == application_id:
            return SimpleNamespace(**{k: v for k, v in json.loads(p).items() if k in ("id", "type", "data")})
    raise AssertionError(application_id)


def event(kind: str, parent: str, app: str, **data):
    return SimpleNamespace(id=f"e-{next(SERIAL)}", type=kind, data={"parent_id": parent, "application_id": app, **data})


# What happens to a family in the services, each change with the event its
# service publishes in the same transaction.

def place(stack, who, apps):
    ref = stack.queue.publish_place(apps[0])
    return [event("referral.issued.v1", who.family, apps[0], referral_id=ref["referral_id"])]


def moves_up(stack, who, apps):
    entry = stack.queue.entries[apps[-1]]
    entry["history"].append({"at": "2027-01-01T00:00:00+00:00", "position": max(1, entry["history"][-1]["position"] - 1)})
    e = event("application.position_changed.v1", who.family, apps[-1], position=entry["history"][-1]["position"],
              kindergarten_id=entry["preferences"][0])
    e.time = datetime.now(UTC)
    return [e]


def confirmed(stack, who, apps):
    found = []
    for rid, ref in stack.queue.referrals.items():
        if ref["status"] == "live" and ref["application_id"] in apps:
            ref["state"] = "awaiting_enrolment"
            found.append(event("referral.privilege_confirmed.v1", who.family, ref["application_id"], referral_id=rid))
    return found


def expired(stack, who, apps):
    found = []
    for rid, ref in stack.queue.referrals.items():
        if ref["status"] == "live" and ref["application_id"] in apps:
            ref.update(status="ended", state="expired")
            stack.queue.entries[ref["application_id"]]["status"] = "paused"
            stack.queue.entries[ref["application_id"]]["paused_until"] = "2027-06-01T00:00:00+06:00"
            found.append(event("referral.expired.v1", who.family, ref["application_id"], referral_id=rid))
    return found


def voucher(stack, who, apps):
    # The gateway's own table, written by its consumer with the event.
    e = new_event("verification.voucher_decided.v1", apps[0], {
        "application_id": apps[0], "parent_id": who.family, "decision": "approved", "benefit_type": "full",
        "reason": "", "decision_number": next(SERIAL), "decided_at": "2026-11-23T06:00:00+00:00"},
        source="verification")
    return [SimpleNamespace(id=e.id, type=e.type, data=e.data, voucher=e)]


def another_child(stack, who, apps, api=None, email=None):
    app, new = submit(api, stack, email)
    assert not new
    apps.append(app)
    return [submitted_event(stack, app)]


CHANGES = {"place": place, "moves_up": moves_up, "confirmed": confirmed, "expired": expired,
           "voucher": voucher, "another_child": another_child}


def consume(stack, events) -> None:
    gw = stack.gateway.state.gateway
    with gw.sessions() as s, s.begin():
        for e in events:
            if hasattr(e, "voucher"):
                vouchers.record(s, e.voucher)     # its consumer bumps in the same transaction
            elif e.type == "application.position_changed.v1":
                history.record(s, e)              # the same
            else:
                readmodel.record(s, e)


def both(stack, who) -> tuple[dict, dict]:
    gw = stack.gateway.state.gateway
    kept = asyncio.run(cabinet.children(gw, who))
    asked = asyncio.run(cabinet.children(gw, who, fresh=True))
    return kept, asked


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(sorted(CHANGES)), st.booleans(), st.randoms()),
                      min_size=1, max_size=6))
def test_read_model_says_what_the_services_say_once_the_events_are_consumed(api, stack, steps):
    headers, first = family(api, stack)
    who = parent_principal(stack.queue.entries[first]["parent_id"])
    apps = [first]
    api.get("/api/v1/me", headers=headers)              # the read model keeps the family
    in_flight = []
    for name, read_between, rnd in steps:
        extra = {"api": api, "email": headers["email"]} if name == "another_child" else {}
        in_flight += CHANGES[name](stack, who, apps, **extra)
        if read_between:                                 # a parent reads while events are in flight
            api.get("/api/v1/me", headers=headers)
        # Some of the events arrive, out of order, some twice.
        rnd.shuffle(in_flight)
        cut = rnd.randint(0, len(in_flight))
        arrived, in_flight = in_flight[:cut], in_flight[cut:]
        consume(stack, arrived + rnd.sample(arrived, k=min(len(arrived), rnd.randint(0, 2))))
    consume(stack, in_flight)
    kept, asked = both(stack, who)
    assert kept == asked
    assert [a["id"] for a in kept["applications"]] == apps
    served = api.get("/api/v1/me", headers=headers).json()       # the route answers from the read model
    assert [a["id"] for a in served["applications"]] == apps
    assert [a["queue"]["status"] for a in served["applications"]] == [a["queue"]["status"] for a in asked["applications"]]


def test_a_change_stays_unseen_until_its_event_arrives_and_a_repeat_changes_nothing(api, stack):
    headers, app = family(api, stack)
    who = parent_principal(stack.queue.entries[app]["parent_id"])
    before = api.get("/api/v1/me", headers=headers).json()
    assert before["applications"][0]["referrals"] == []
    events = place(stack, who, [app])
    # In flight: the parent still sees what the services said before.
    assert api.get("/api/v1/me", headers=headers).json() == before
    consume(stack, events)
    after = api.get("/api/v1/me", headers=headers).json()
    assert after["applications"][0]["referrals"][0]["status"] == "awaiting_enrolment"
    consume(stack, events)                               # delivered again
    assert api.get("/api/v1/me", headers=headers).json() == after


def test_the_parents_own_act_shows_at_once(api, stack):
    headers, app = family(api, stack)
    who = parent_principal(stack.queue.entries[app]["parent_id"])
    consume(stack, place(stack, who, [app]))
    ref = api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"][0]
    r = api.post(f"/api/v1/me/referrals/{ref['referral_id']}/cancel", headers=headers)
    assert r.status_code == 200
    assert api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"] == []
    assert api.post(f"/api/v1/me/applications/{app}/remove", headers=headers).status_code == 200
    assert api.get("/api/v1/me", headers=headers).json()["applications"][0]["status"] == "removed"


def test_a_child_submitted_by_the_signed_in_parent_is_there_before_its_event(api, stack):
    headers, app = family(api, stack)
    assert len(api.get("/api/v1/me", headers=headers).json()["applications"]) == 1
    r = api.post("/api/v1/drafts", json={"locale": "en"})
    t = r.json()["draft"]
    assert api.put(f"/api/v1/drafts/{t}/child", json={**CHILD, "pin": f"2150620240{next(SERIAL):04d}"}).status_code == 200
    assert api.put(f"/api/v1/drafts/{t}/parent", json={**PARENT, "email": headers["email"]}).status_code == 200
    assert api.post(f"/api/v1/drafts/{t}/email-code").status_code == 202
    assert api.post(f"/api/v1/drafts/{t}/email-code/verify",
                    json={"code": stack.last_code(headers["email"])}).status_code == 200
    r = api.post(f"/api/v1/drafts/{t}/submit", json=CONFIRM, headers={"authorization": headers["authorization"]})
    assert r.status_code == 201, r.text
    # No event consumed: the parent's own submission made the read model ask again.
    ids = [a["id"] for a in api.get("/api/v1/me", headers=headers).json()["applications"]]
    assert ids == [app, r.json()["application_id"]]


# A referral whose confirmation window ends on Thursday 11 March 2027, 00:00
# in Bishkek: its last working day, the one day it may be extended, is
# Wednesday 10 March (8 and 9 March are days off).
WINDOW_END = "2027-03-11T00:00:00+06:00"
EXTENSION_DAY = date(2027, 3, 10)


def confirmation_window(stack, who, app) -> str:
    """A privileged referral of `app` whose window ends at WINDOW_END, as the
    queue records it, its issue consumed."""
    rid = stack.queue.publish_place(app, needs_confirmation=True)["referral_id"]
    stack.queue.referrals[rid]["deadline"] = WINDOW_END
    consume(stack, [event("referral.issued.v1", who.family, app, referral_id=rid)])
    return rid


def test_a_parents_cabinet_read_asks_temporal_nothing(api, stack):
    """With Temporal down, the referral's window and buttons still show from
    the queue's books, and the copy is kept as any other."""
    headers, app = family(api, stack)
    who = parent_principal(stack.queue.entries[app]["parent_id"])
    rid = confirmation_window(stack, who, app)
    stack.queue.workflows.down = True
    stack.today_is(EXTENSION_DAY)
    try:
        seen = api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"][0]
        assert seen["stage"] == "confirmation" and seen["status"] == "awaiting_confirmation"
        assert seen["deadline"] == WINDOW_END and seen["actions"] == ["cancel", "extend"]
        # No event: the copy answers, whatever the queue's record says meanwhile.
        stack.queue.referrals[rid]["deadline"] = "2031-01-01T00:00:00+06:00"
        assert api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"][0] == seen
    finally:
        stack.queue.workflows.down = False
        stack.today_is(None)


def test_a_copy_is_not_kept_when_the_queue_did_not_answer(api, stack):
    headers, app = family(api, stack)
    stack.queue.failing = True
    try:
        seen = api.get("/api/v1/me", headers=headers).json()["applications"][0]
        assert seen["queue"] is None and seen["queue_error"] == "unavailable"
    finally:
        stack.queue.failing = False
    # No event, yet the next read asks again: the outage was not kept.
    assert api.get("/api/v1/me", headers=headers).json()["applications"][0]["queue"]["status"] == "queued"


def test_every_event_that_names_a_family_or_application_is_stamped():
    """A new event type on the cabinet's topics that names an application or
    a parent is stamped, or named as one the cabinet never shows."""
    from pathlib import Path

    schemas = Path(readmodel.__file__).resolve().parents[2] / "kezek" / "events" / "schemas"
    for path in sorted(schemas.glob("*.v1.json")):
        kind = path.name.removesuffix(".json")
        if kind.split(".")[0] not in readmodel.TOPICS:
            continue
        props = json.loads(path.read_text()).get("properties", {})
        if "application_id" in props or "parent_id" in props:
            assert kind in readmodel.STAMPED + readmodel.BUMPED_ELSEWHERE + readmodel.UNSHOWN, kind
    for kind in readmodel.STAMPED:
        props = json.loads((schemas / f"{kind}.json").read_text()).get("properties", {})
        assert "application_id" in props or "parent_id" in props, kind


def as_the_route_answers(data: dict) -> dict:
    """What FastAPI itself makes of `data` for a route declaring the
    cabinet as its response_model (exclude_unset), as /me did before its
    answer was kept with the copy."""
    from fastapi import FastAPI

    from services.gateway.apimodels import Cabinet

    app = FastAPI()

    @app.get("/cabinet", response_model=Cabinet, response_model_exclude_unset=True)
    def route():
        return data

    return TestClient(app).get("/cabinet").json()


def test_the_answer_kept_with_a_copy_follows_the_readers_day_and_the_kindergartens_names(api, stack, monkeypatch):
    import time
    from datetime import timedelta

    headers, app = family(api, stack)
    who = parent_principal(stack.queue.entries[app]["parent_id"])
    gw = stack.gateway.state.gateway
    stack.today_is(EXTENSION_DAY - timedelta(days=1))
    try:
        confirmation_window(stack, who, app)
        asked = as_the_route_answers(asyncio.run(cabinet.children(gw, who, fresh=True)))   # keeps a copy
        served = api.get("/api/v1/me", headers=headers).json()
        assert served == asked == api.get("/api/v1/me", headers=headers).json()      # then the kept answer
        assert served["applications"][0]["referrals"][0]["actions"] == ["cancel"]
        # The next day, no event: the same copy, the extension offered.
        stack.today_is(EXTENSION_DAY)
        assert api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"][0]["actions"] \
            == ["cancel", "extend"]
        # The kindergartens' list read again with a new name: the answer names it.
        kg = served["applications"][0]["referrals"][0]["kindergarten_id"]
        listed = asyncio.run(gw.kindergartens())
        monkeypatch.setattr(gw, "_kindergartens", (time.monotonic() + 60, [
            {**k, "name": "Renamed"} if str(k["id"]) == kg else k for k in listed]))
        again = api.get("/api/v1/me", headers=headers).json()["applications"][0]["referrals"][0]
        assert again["kindergarten_name"] == "Renamed"
    finally:
        stack.today_is(None)


def test_reads_arriving_while_a_query_of_counters_runs_share_the_next_one_begun_after_them(stack, monkeypatch):
    import time

    gw = stack.gateway.state.gateway
    rm = readmodel.CabinetReadModel(gw.sessions, 60)
    families = [f"batch-{next(SERIAL)}" for _ in range(3)]
    for f in families:
        keys = [readmodel.parent_key(f)]
        rm.keep(f, readmodel.Copy(at=rm.clock(), stamps=readmodel.versions(gw.sessions, keys), me={}))
    asked: list[set[str]] = []
    real = readmodel.versions

    def slow_versions(sessions, keys):
        asked.append(set(keys))
        found = real(sessions, keys)
        time.sleep(0.3)                         # a slow answer
        return found

    monkeypatch.setattr(readmodel, "versions", slow_versions)
    a, b, c = families

    async def reads():
        first = asyncio.create_task(rm.checked(a))
        await asyncio.sleep(0.1)                 # its query runs
        readmodel.bump_now(gw.sessions, [readmodel.parent_key(a)])
        later = [asyncio.create_task(rm.checked(f)) for f in (a, b, c)]
        return await first, await asyncio.gather(*later)

    first, (a_again, b_read, c_read) = asyncio.run(reads())
    assert asked == [{readmodel.parent_key(a)}, {readmodel.parent_key(f) for f in families}]
    assert first is not None                    # its query began before the change
    assert a_again is None                      # the next began after it: the copy is stale
    assert b_read is rm._young(b) and c_read is rm._young(c)
