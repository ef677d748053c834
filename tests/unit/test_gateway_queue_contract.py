"""The cabinet against the real queue service (its API in-process, on
SQLite): the gateway reads its queue entries and positions, and removes an
entry naming the parent as the actor."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fakes.gateway import Stack, real_queue

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    state = tmp_path_factory.mktemp("contract")
    queue, callers = real_queue(state)
    queue.state.callers = callers
    stack = Stack(state, queue_app=queue, rate_limit_per_minute=100_000)
    with TestClient(queue) as q:
        for kid, name, lat, lon in (("bsk-12", "№12 «Солнышко»", 42.8752, 74.6012),
                                    ("bsk-7", "№7 «Айгерим»", 42.8695, 74.5950)):
            r = q.put(f"/api/v1/kindergartens/{kid}", headers=queue.state.callers.admin(), json={
                "name": name, "district": "41711210000000", "address": "Бишкек", "lat": lat, "lon": lon,
                "languages": ["ru", "ky"]})
            assert r.status_code in (200, 201), r.text
    return stack, queue


def join_queue(queue, submitted: dict) -> None:
    """What the queue's consumer of application.submitted.v1 does, through its API."""
    with TestClient(queue) as q:
        r = q.post("/api/v1/queue-entries", headers=queue.state.callers.service("registration"), json={
            "application_id": submitted["application_id"], "pin": submitted["child_pin"],
            "surname": submitted["child_surname"], "name": submitted["child_name"],
            "birth_date": submitted["child_birth_date"], "category": submitted["category"],
            "language": submitted["language"], "preferences": submitted["preferences"],
            "parent_id": submitted["parent_id"], "locale": submitted["locale"],
            "queue_date": submitted["queue_date"]})
        assert r.status_code == 201, r.text


def test_cabinet_shows_the_real_queue_entry_positions_and_removes_it(world):
    stack, queue = world
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        t = c.post("/api/v1/drafts", json={"locale": "ru"}).json()["draft"]
        c.put(f"/api/v1/drafts/{t}/child", json={"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"})
        r = c.put(f"/api/v1/drafts/{t}/parent", json={
            "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
            "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
            "address": {"region": "41711000000000", "district": "41711210000000",
                        "settlement": "41711000000001", "street": "Киевская", "house": "1"},
            "phone": "+996555123456", "email": "contract@example.kg"})
        assert r.status_code == 200
        c.post(f"/api/v1/drafts/{t}/email-code")
        c.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": stack.last_code("contract@example.kg")})
        r = c.post(f"/api/v1/drafts/{t}/submit", json={"category": "general", "language": "ru",
                                                        "preferences": ["bsk-12", "bsk-7"], "agreement": True})
        assert r.status_code == 201
        token = stack.last_activation_token("contract@example.kg")
        c.post("/api/v1/activation", json={"token": token, "password": PASSWORD})
        bearer = c.post("/api/v1/sessions", json={"login": "contract@example.kg", "password": PASSWORD}).json()["token"]
        h = {"authorization": f"Bearer {bearer}"}

        before = c.get("/api/v1/me", headers=h).json()["applications"][0]
        assert before["queue"] is None and before["queue_error"] is None    # not taken in yet

        join_queue(queue, stack.events("application.submitted.v1")[-1])
        app = c.get("/api/v1/me", headers=h).json()["applications"][0]
        assert app["queue"]["status"] == "queued" and app["queue"]["category"] == "general"
        assert [(p["kindergarten_id"], p["kindergarten_name"], p["position"]) for p in app["queue"]["positions"]] == [
            ("bsk-12", "№12 «Солнышко»", 1), ("bsk-7", "№7 «Айгерим»", 1)]
        assert app["queue"]["positions"][0]["ahead"] == {"higher_category": 0, "earlier_queue_date": 0}
        assert app["referrals"] == []
        assert [p["position"] for p in app["queue"]["history"]] == [1]    # what the parent has seen so far

        page = c.get("/api/v1/me/kindergartens-nearby", headers=h).json()
        assert [k["id"] for k in page] == ["bsk-12", "bsk-7"]

        assert c.post(f"/api/v1/me/applications/{app['id']}/remove", headers=h).status_code == 200
        after = c.get("/api/v1/me", headers=h).json()["applications"][0]
        assert after["status"] == "removed" and after["queue"]["status"] == "removed"
        with TestClient(queue) as q:
            trail = q.get(f"/api/v1/queue-entries/{app['id']}/audit",
                          headers=queue.state.callers.staff(9, "operator")).json()
        [removed] = [e for e in trail if e["action"] == "application.removed"]
        # The verified parent, as the gateway vouched for the session: no name the caller asserted.
        assert removed["actor"].startswith("parent:") and removed["actor_role"] == "parent"
        assert removed["via"] == "gateway"


def test_position_changes_from_the_queue_draw_the_chart(world):
    from kezek.events import new_event
    from services.gateway import history

    stack, _ = world
    gw = stack.gateway.state.gateway
    app_id = "app-chart"
    with gw.sessions() as s, s.begin():
        for days, pos in ((0, 9), (30, 6), (60, 2)):
            from datetime import UTC, datetime, timedelta
            event = new_event("application.position_changed.v1", app_id,
                              {"application_id": app_id, "position": pos, "kindergarten_id": "bsk-12"},
                              source="queue", time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=days))
            history.record(s, event)
            history.record(s, event)    # redelivered: one point
    assert [p["position"] for p in history.points(gw.sessions, app_id)] == [9, 6, 2]


def test_positions_the_parent_saw_are_kept_when_they_change(world):
    from services.gateway import history

    stack, _ = world
    gw = stack.gateway.state.gateway
    history.seen(gw.sessions, "app-x", "bsk-12", 5)
    history.seen(gw.sessions, "app-x", "bsk-12", 5)
    history.seen(gw.sessions, "app-x", "bsk-12", 3)
    assert [p["position"] for p in history.points(gw.sessions, "app-x")] == [5, 3]


def test_the_queues_refusal_reaches_the_parent_in_the_pages_language(world):
    import re

    stack, queue = world
    with TestClient(stack.gateway, base_url="https://testserver") as c:
        t = c.post("/api/v1/drafts", json={"locale": "ru"}).json()["draft"]
        c.put(f"/api/v1/drafts/{t}/child", json={"pin": "21506202400012", "surname": "Асанов", "name": "Бакыт"})
        c.put(f"/api/v1/drafts/{t}/parent", json={
            "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000124",
            "document_type": "id_card", "document_number": "ID1234568", "document_issued_on": "2020-05-01",
            "address": {"region": "41711000000000", "district": "41711210000000",
                        "settlement": "41711000000001", "street": "Киевская", "house": "1"},
            "phone": "+996555123457", "email": "held@example.kg"})
        c.post(f"/api/v1/drafts/{t}/email-code")
        c.post(f"/api/v1/drafts/{t}/email-code/verify", json={"code": stack.last_code("held@example.kg")})
        assert c.post(f"/api/v1/drafts/{t}/submit", json={"category": "general", "language": "ru",
                                                           "preferences": ["bsk-7"], "agreement": True}).status_code == 201
        c.post("/api/v1/activation", json={"token": stack.last_activation_token("held@example.kg"),
                                           "password": PASSWORD})
        join_queue(queue, stack.events("application.submitted.v1")[-1])
        with TestClient(queue) as q:     # a free place: the child gets a referral at once
            r = q.post("/api/v1/kindergartens/bsk-7/places", headers=queue.state.callers.admin(),
                       json={"cohort": 2024, "language": "ru", "count": 1})
            assert r.status_code == 201, r.text
        queue.state.queue.allocation.process_requests()     # what the allocator's loop does
        c.cookies.set("kezek_lang", "ru")
        c.post("/login", data={"login": "held@example.kg", "password": PASSWORD})
        app_id = stack.events("application.submitted.v1")[-1]["application_id"]
        page = c.get(f"/cabinet/applications/{app_id}/remove")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = c.post(f"/cabinet/applications/{app_id}/remove", data={"csrf": token})
    assert r.status_code == 409
    assert "у ребёнка есть направление: сначала отмените направление." in r.text
