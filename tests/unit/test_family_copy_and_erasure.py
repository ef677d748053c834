"""The family's own copy and its request to erase (DOMAIN.md section 7):
each service answers the parent of the family only, with everything it
holds; the queue honours an erasure of an application that closed without
a place by anonymising it through the retention path and telling every
service, records every request, and refuses with the legal reason where
the records must be kept."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory, unit_of_work
from tests.migrated import upgrade
from kezek.retention import ANONYMISED, ERASURE_GRANTED, anonymous_pin
from services.queue.domain.erasure import erasure_refusal
from services.queue.models import outbox
from tests.builders import Clock, queue_api, sqlite_queue

NOW = datetime(2027, 3, 1, 4, tzinfo=UTC)


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize("status,outcome,code", [
    ("queued", None, "erasure_in_queue"), ("paused", None, "erasure_in_queue"),
    ("referred", None, "erasure_holds_referral"), ("enrolled", "enrolled", "erasure_enrolled"),
    ("left", "left", "erasure_within_retention"), ("submitted", None, "erasure_not_closed"),
])
def test_erasure_is_refused_with_the_legal_reason_where_records_must_be_kept(status, outcome, code):
    why = erasure_refusal(status, outcome, NOW + timedelta(days=10) if outcome else None, NOW)
    assert why is not None and why.code == code and why.field == "application_id"


@pytest.mark.parametrize("status,outcome", [("removed", "removed"), ("aged_out", "aged_out"), (None, "refused")])
def test_erasure_is_honoured_for_an_application_that_closed_without_a_place(status, outcome):
    assert erasure_refusal(status, outcome, NOW + timedelta(days=1000), NOW) is None


def test_a_left_childs_record_may_be_erased_once_its_period_is_over():
    assert erasure_refusal("left", "left", NOW - timedelta(seconds=1), NOW) is None


# ------------------------------------------------------------------ the queue


@pytest.fixture
def client(tmp_path):
    clock = Clock(NOW)
    with sqlite_queue(tmp_path, clock, kindergartens=()) as service, queue_api(tmp_path, service) as c:
        c.clock = clock
        c.put("/api/v1/kindergartens/sun", headers=c.as_.admin(),
              json={"name": "Sun", "district": "Leninsky", "languages": ["ru"]})
        for app_id, pin in (("a1", "21506202400011"), ("a2", "21506202400012")):
            r = c.post("/api/v1/queue-entries", headers=c.as_.service("registration"), json={
                "application_id": app_id, "pin": pin, "surname": "Asanov", "name": "Aibek", "language": "ru",
                "preferences": ["sun"], "parent_id": "p1"})
            assert r.status_code == 201, r.text
        yield c


def events(c, type_):
    with c.service.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == type_)).scalars().all()
    return [json.loads(p)["data"] for p in rows]


def test_the_family_copy_holds_the_entry_referrals_positions_and_the_history_of_acts(client):
    client.post("/api/v1/kindergartens/sun/places", headers=client.as_.admin(),
                json={"cohort": 2024, "language": "ru", "count": 1})
    client.service.allocation.process_requests()
    r = client.get("/api/v1/queue-entries/a2/family-copy", headers=client.as_.parent("p1"))
    assert r.status_code == 200, r.text
    copy = r.json()
    assert copy["entry"]["pin"] == "21506202400012" and copy["entry"]["surname"] == "Asanov"
    assert copy["entry"]["status"] == "queued" and [p["position"] for p in copy["positions"]] == [1]
    a1 = client.get("/api/v1/queue-entries/a1/family-copy", headers=client.as_.parent("p1")).json()
    [ref] = a1["referrals"]
    assert ref["kindergarten_id"] == "sun" and ref["deadline"] and ref["state"]
    assert a1["allocations"] and {"application.queued"} <= {h["action"] for h in a1["history"]}
    assert all(not h["by"].startswith("staff:") for h in a1["history"])


def test_another_family_gets_not_found_for_the_copy_and_the_erasure(client):
    for method, path in (("GET", "/api/v1/queue-entries/a1/family-copy"), ("POST", "/api/v1/queue-entries/a1/erasure")):
        r = client.request(method, path, headers=client.as_.parent("someone-else"))
        assert r.status_code == 404
        r = client.request(method, path, headers=client.as_.staff(7, "caseworker", district="Leninsky"))
        assert r.status_code == 403


def test_erasure_of_a_child_in_the_queue_is_refused_with_the_reason_and_recorded(client):
    r = client.post("/api/v1/queue-entries/a1/erasure", headers=client.as_.parent("p1"))
    assert r.status_code == 409 and r.json()["errors"][0]["code"] == "erasure_in_queue"
    [row] = [e for e in client.service.audit.trail("application:a1") if e["action"] == "application.erasure_refused"]
    assert row["actor"] == "parent:p1" and row["details"]["code"] == "erasure_in_queue"
    assert events(client, ERASURE_GRANTED) == []


def test_erasure_of_a_removed_application_anonymises_it_at_once_and_tells_every_service(client):
    client.post("/api/v1/queue-entries/a1/removal", headers=client.as_.parent("p1"), json={"reason": "moved"})
    client.clock.now = NOW + timedelta(days=2)
    r = client.post("/api/v1/queue-entries/a1/erasure", headers=client.as_.parent("p1"))
    assert r.status_code == 200, r.text
    assert r.json()["erased"] is True
    [fact] = events(client, ERASURE_GRANTED)
    assert fact == {"application_id": "a1", "parent_id": "p1", "outcome": "removed", "closed_at": NOW.isoformat(),
                    "granted_at": (NOW + timedelta(days=2)).isoformat()}
    copy = client.get("/api/v1/queue-entries/a1/family-copy", headers=client.as_.parent("p1")).json()
    assert copy["entry"]["pin"] == anonymous_pin("a1") and copy["entry"]["surname"] == ANONYMISED
    assert copy["retention"]["anonymised_at"] and copy["retention"]["erasure_requested_at"]
    actions = [e["action"] for e in client.service.audit.trail("application:a1")]
    assert "application.erasure_granted" in actions and "retention.anonymised" in actions
    # Asked again: already done, nothing new.
    assert client.post("/api/v1/queue-entries/a1/erasure", headers=client.as_.parent("p1")).json()["erased"]
    assert len(events(client, ERASURE_GRANTED)) == 1
    # The other child of the family is untouched.
    assert client.get("/api/v1/queue-entries/a2/family-copy",
                      headers=client.as_.parent("p1")).json()["entry"]["pin"] == "21506202400012"


# ------------------------------------------------------- the other services


def test_registrations_copy_is_the_parents_own_account_and_applications_with_their_acts(tmp_path):
    from services.registration.models import Account, Application, trail
    from services.registration.service import RegistrationService
    from kezek.trust import parent_principal

    url = f"sqlite:///{tmp_path / 'registration.db'}"
    upgrade("registration", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as s:
        for acc in ("acc-1", "acc-2"):
            s.add(Account(id=acc, email=f"{acc}@example.kg", pin="12345678901234", surname="Asanova", name="Aigul",
                          phone="+996700123456", locale="ru", created_at=NOW))
        s.flush()
        s.add(Application(id="a1", account_id="acc-1", country="KG", child_pin="21506202400011",
                          child_surname="Asanov", child_name="Aibek", child_birth_date=date(2024, 6, 15),
                          parent={"role": "mother", "document": {"number": "ID123"}}, address={"region": "41702"},
                          phone="+996700123456", email="acc-1@example.kg", category="general", language="ru",
                          preferences=["sun"], submitted_at=NOW))
        trail.record(s, parent_principal("acc-1"), "application.submitted", "application:a1")
        trail.record(s, parent_principal("acc-2"), "session.opened", "account:acc-2")
    svc = RegistrationService.__new__(RegistrationService)
    svc.sessions = sessions
    copy = svc.family_copy("acc-1")
    assert copy["account"]["email"] == "acc-1@example.kg"
    [app] = copy["applications"]
    assert app["child"]["pin"] == "21506202400011" and app["parent"]["document"] == {"number": "ID123"}
    assert [h["action"] for h in copy["history"]] == ["application.submitted"]
    engine.dispose()
