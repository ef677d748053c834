"""The queue's HTTP API: versioned, documented, behind the trust boundary
(a service token names the caller and the verified actor; each route says
who may use it), and bad input is a 4xx that names the field, never a 500."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from kezek.db import make_engine, make_session_factory
from kezek.settings import Settings
from services.queue.api import create_app
from services.queue.usecases import Queue
from tests.builders import queue_api, sqlite_queue
from tests.fakes.tokens import Callers

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def client(tmp_path):
    with sqlite_queue(tmp_path, lambda: NOW, kindergartens=()) as service, queue_api(tmp_path, service) as c:
        for kid, district in (("sun", "Leninsky"), ("moon", "Oktyabrsky")):
            r = c.put(f"/api/v1/kindergartens/{kid}", headers=c.as_.admin(), json={
                "name": kid.title(), "district": district, "address": "Street 1", "languages": ["ru", "ky"]})
            assert r.status_code == 200, r.text
        yield c


def join(c, pin="21506202400011", **kw):
    body = {"pin": pin, "surname": "Asanov", "name": "Aibek", "language": "ru", "preferences": ["sun"],
            "parent_id": "p1", **kw}
    return c.post("/api/v1/queue-entries", json=body, headers=c.as_.service("registration"))


def fields(r):
    return [e["field"] for e in r.json()["errors"]]


def test_openapi_documents_the_versioned_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/queue-entries", "/api/v1/queue-entries/{application_id}/positions",
              "/api/v1/public/queues/{kindergarten}/{cohort}/{language}", "/api/v1/kindergartens/{kindergarten}/places",
              "/api/v1/audit", "/api/v1/policy", "/api/v1/allocation-runs/{run_id}/replay"):
        assert p in paths


def test_join_then_the_parent_reads_the_entry_with_a_masked_name(client):
    r = join(client)
    assert r.status_code == 201, r.text
    entry = client.get(f"/api/v1/queue-entries/{r.json()['id']}", headers=client.as_.parent("p1")).json()
    assert entry["status"] == "queued" and entry["child"] == "A***** A." and entry["cohort"] == 2024


def test_second_entry_for_a_child_pin_is_a_409_naming_the_pin(client):
    join(client)
    r = join(client, parent_id="someone-else")
    assert r.status_code == 409 and fields(r) == ["pin"]
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["code"] == "pin_taken"


@pytest.mark.parametrize("body,field", [
    ({"pin": "2150620240001"}, "pin"),
    ({"pin": "23102202400011"}, "pin"),
    ({"preferences": []}, "preferences"),
    ({"preferences": ["sun", "moon", "x", "y"]}, "preferences"),
    ({"preferences": ["nowhere"]}, "preferences.0"),
    ({"category": "veteran"}, "category"),
    ({"language": "RU"}, "language"),
    ({"birth_date": "2024-06-16"}, "birth_date"),
    ({"unexpected": 1}, "unexpected"),
])
def test_bad_input_is_refused_with_a_4xx_naming_the_field(client, body, field):
    r = join(client, **body)
    assert 400 <= r.status_code < 500, r.text
    assert field in fields(r), r.json()


def test_refusals_carry_a_code_and_its_parameters_for_the_reader_s_language(client):
    r = join(client, preferences=["sun"], language="uz")
    [error] = r.json()["errors"]
    assert error["code"] == "kindergarten_language" and error["params"]["kindergarten"] == "sun"
    assert error["params"]["language"] == "uz" and "does not teach in 'uz'" in error["message"]


def test_publishing_places_then_the_allocator_issues_a_referral(client):
    entry = join(client).json()
    r = client.post("/api/v1/kindergartens/sun/places", headers=client.as_.staff(3, "kindergarten", kindergarten="sun"),
                    json={"cohort": 2024, "language": "ru", "count": 2})
    assert r.status_code == 201 and r.json()["free"] == 2
    client.service.allocation.process_requests()
    got = client.get(f"/api/v1/queue-entries/{entry['id']}", headers=client.as_.parent("p1")).json()
    assert got["status"] == "referred" and got["referral"]["kindergarten"] == "sun"
    assert got["referral"]["extended"] is False     # the one extension, what the cabinet offers reads
    [record] = client.get(f"/api/v1/queue-entries/{entry['id']}/allocations", headers=client.as_.parent("p1")).json()
    assert record["inputs"]["free_seen"] == [{"kindergarten": "sun", "reserved": 0, "open": 2}]
    operator = client.as_.staff(6, "operator")
    [run] = client.get("/api/v1/allocation-runs", headers=operator).json()
    assert client.get(f"/api/v1/allocation-runs/{run['run_id']}/replay", headers=operator).json()["matches"] is True


def test_withdrawing_more_than_free_is_a_409_naming_count(client):
    admin = client.as_.admin()
    client.post("/api/v1/kindergartens/sun/places", headers=admin, json={"cohort": 2024, "language": "ru", "count": 1})
    r = client.post("/api/v1/kindergartens/sun/places/withdrawal", headers=admin,
                    json={"cohort": 2024, "language": "ru", "count": 3})
    assert r.status_code == 409 and fields(r) == ["count"]


def test_publishing_for_an_unknown_kindergarten_is_a_404(client):
    r = client.post("/api/v1/kindergartens/nowhere/places", headers=client.as_.admin(),
                    json={"cohort": 2024, "language": "ru", "count": 1})
    assert r.status_code == 404 and fields(r) == ["kindergarten"]


def test_positions_come_with_an_explanation(client):
    join(client, pin="21506202400011", queue_date="2026-01-01T10:00:00+06:00")
    me = join(client, pin="21506202400012", name="Bek", preferences=["sun", "moon"], parent_id="p2",
              queue_date="2026-02-01T10:00:00+06:00").json()
    [sun, moon] = client.get(f"/api/v1/queue-entries/{me['id']}/positions", headers=client.as_.parent("p2")).json()
    assert (sun["position"], moon["position"]) == (2, 1)
    assert "1 in category general with an earlier queue date" in sun["explanation"]


def test_public_queue_is_anonymised_and_open_without_a_token(client):
    join(client, patronymic="Talantovich")
    r = client.get("/api/v1/public/queues/sun/2024/ru")
    assert r.status_code == 200
    [entry] = r.json()["entries"]
    assert entry["child"] == "A***** A. T." and "pin" not in entry and "parent_id" not in entry


def test_removal_by_the_parent_then_the_pin_may_join_again_with_a_new_queue_date(client):
    entry = join(client).json()
    r = client.post(f"/api/v1/queue-entries/{entry['id']}/removal", headers=client.as_.parent("p1"),
                    json={"reason": "moved"})
    assert r.json()["status"] == "removed"
    assert join(client).status_code == 201


def test_policy_changes_are_versioned_and_bad_values_name_the_field(client):
    admin = client.as_.admin()
    r = client.put("/api/v1/policy", headers=admin, json={"changes": {"stoplist_days": 14}, "reason": "decree"})
    assert r.status_code == 200 and r.json()["policy"]["stoplist_days"] == 14
    r = client.put("/api/v1/policy", headers=admin, json={"changes": {"stoplist_days": "x"}, "reason": "typo"})
    assert r.status_code == 422 and fields(r) == ["policy.stoplist_days"]
    assert [h["reason"] for h in client.get("/api/v1/policy/history", headers=admin).json()] == ["decree"]
    assert any(e["action"] == "policy.changed" for e in client.get("/api/v1/audit", headers=admin).json())


def test_unknown_entry_is_a_404_naming_the_field(client):
    r = client.get("/api/v1/queue-entries/nope", headers=client.as_.staff(7, "admin"))
    assert r.status_code == 404 and fields(r) == ["application_id"]


# ---------------------------------------------------------------- the trust boundary


def test_a_call_without_a_token_is_refused_even_with_an_actor_header(client):
    r = client.post("/api/v1/kindergartens/sun/places", headers={"X-Actor": "admin:1"},
                    json={"cohort": 2024, "language": "ru", "count": 1})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/audit", headers={"X-Actor": "admin:1"}).status_code == 401
    assert client.service.views.places("sun") == []


def test_a_token_for_another_service_or_a_person_no_caller_may_vouch_for_is_refused(client):
    other = {"authorization": f"Bearer {client.as_.keys.sign('gateway', 'notifications')}"}
    assert client.get("/api/v1/kindergartens", headers=other).status_code == 401
    from kezek.trust import staff_principal
    # The gateway vouches for parents only: an "admin" it names is refused.
    forged = client.as_.header("gateway", staff_principal(1, "admin"))
    assert client.put("/api/v1/policy", headers=forged,
                      json={"changes": {"stoplist_days": 1}, "reason": "x"}).status_code == 401


def test_a_wrong_role_is_refused(client):
    entry = join(client).json()
    body = {"cohort": 2024, "language": "ru", "count": 1}
    assert client.post("/api/v1/kindergartens/sun/places", headers=client.as_.parent("p1"), json=body).status_code == 403
    assert client.put("/api/v1/policy", headers=client.as_.staff(6, "operator"),
                      json={"changes": {}, "reason": "x"}).status_code == 403
    assert client.post("/api/v1/queue-entries", headers=client.as_.service("gateway"),
                       json={"pin": "21506202400019"}).status_code == 403
    assert client.post(f"/api/v1/queue-entries/{entry['id']}/privilege-revocation",
                       headers=client.as_.staff(1, "caseworker", district="Leninsky"),
                       json={"reason": "x"}).status_code == 403


def test_scoped_callers_reach_only_their_family_kindergarten_or_district(client):
    entry = join(client).json()
    url = f"/api/v1/queue-entries/{entry['id']}"
    assert client.get(url, headers=client.as_.parent("p2")).status_code == 404          # another family
    assert client.get(url, headers=client.as_.staff(1, "caseworker", district="Oktyabrsky")).status_code == 404
    assert client.get(url, headers=client.as_.staff(1, "caseworker", district="Leninsky")).status_code == 200
    body = {"cohort": 2024, "language": "ru", "count": 1}
    moon_staff = client.as_.staff(4, "kindergarten", kindergarten="moon")
    assert client.post("/api/v1/kindergartens/sun/places", headers=moon_staff, json=body).status_code == 404
    officer = client.as_.staff(5, "district", district="Oktyabrsky")
    assert client.post("/api/v1/kindergartens/moon/places", headers=officer, json=body).status_code == 201
    assert client.post("/api/v1/kindergartens/sun/places", headers=officer, json=body).status_code == 404
    revoke = f"{url}/privilege-revocation"
    assert client.post(revoke, headers=client.as_.staff(2, "supervisor", district="Oktyabrsky"),
                       json={"reason": "forged"}).status_code == 404


def test_the_audit_records_the_verified_actor_and_each_staff_look_with_why(client):
    entry = join(client).json()
    caseworker = client.as_.staff(1, "caseworker", district="Leninsky")
    without_why = client.post("/api/v1/queue-entries/search", headers=caseworker, json={"pin": "21506202400011"})
    assert without_why.status_code == 422 and without_why.json()["errors"][0]["field"].endswith("purpose")
    no_reference = client.post("/api/v1/queue-entries/search", headers=caseworker,
                               json={"pin": "21506202400011", "purpose": "official_request"})
    assert no_reference.status_code == 422 and no_reference.json()["errors"][0]["field"] == "note"
    found = client.post("/api/v1/queue-entries/search", headers=caseworker,
                        json={"pin": "21506202400011", "purpose": "official_request", "note": "court 12/3"})
    assert found.json()["id"] == entry["id"]
    client.get(f"/api/v1/queue-entries/{entry['id']}", headers=caseworker)
    client.post(f"/api/v1/queue-entries/{entry['id']}/removal", headers=client.as_.parent("p1"), json={"reason": "x"})
    trail = client.get(f"/api/v1/queue-entries/{entry['id']}/audit", headers=client.as_.staff(6, "operator")).json()
    by_action = {e["action"]: e for e in trail}
    queued, removed = by_action["application.queued"], by_action["application.removed"]
    assert (queued["actor"], queued["actor_role"], queued["via"]) == ("service:registration", "service", None)
    assert (removed["actor"], removed["actor_role"], removed["via"]) == ("parent:p1", "parent", "gateway")
    looked = [e for e in trail if e["action"] == "application.viewed"]
    assert [(e["kind"], e["actor"], e["actor_role"], e["reason"]) for e in looked] == [
        ("look", "staff:1", "caseworker", "official_request: court 12/3"),
        ("look", "staff:1", "caseworker", "work:entry")]
    assert looked[0]["details"] == {"office": "Leninsky"}


def test_a_family_is_told_which_offices_looked_at_its_entries_and_no_other_familys(client):
    entry = join(client).json()
    client.get(f"/api/v1/queue-entries/{entry['id']}", headers=client.as_.staff(1, "caseworker", district="Leninsky"))
    told = client.get("/api/v1/families/p1/looks", headers=client.as_.parent("p1"))
    assert [(x["role"], x["office"], x["what"], x["application_id"]) for x in told.json()] == [
        ("caseworker", "Leninsky", "application.viewed", entry["id"])]
    assert "staff:1" not in told.text
    assert client.get("/api/v1/families/p1/looks", headers=client.as_.parent("p2")).status_code == 404


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/v1/queue-entries", {"pin": "21506202400011", "surname": 123, "name": "A", "language": "ru",
                                      "preferences": ["sun"]}),
    ("post", "/api/v1/queue-entries", {"pin": "21506202400011", "surname": "A", "name": "A", "language": "ru",
                                      "preferences": [1]}),
    ("post", "/api/v1/queue-entries", {"pin": "21506202400011", "surname": "A\u0000B", "name": "A",
                                      "language": "ru", "preferences": ["sun"]}),
    ("post", "/api/v1/queue-entries", ["not", "an", "object"]),
    ("post", "/api/v1/kindergartens/sun/places", {"cohort": 10**30, "language": "ru", "count": 1}),
    ("post", "/api/v1/kindergartens/sun/places", {"cohort": 2024, "language": "ru", "count": 10**30}),
    ("put", "/api/v1/policy", {"changes": {"categories": [1, "x"]}, "reason": "r"}),
    ("put", "/api/v1/policy", {"changes": {"categories": [{"code": "general", "rank": "first"}]}, "reason": "r"}),
    ("put", "/api/v1/policy", {"changes": {"min_age_years": None}, "reason": "r"}),
    ("put", "/api/v1/policy", {"changes": {"stoplist_days": 10**30}, "reason": "r"}),
    ("get", "/api/v1/audit?after_id=" + "9" * 40, None),
    ("get", "/api/v1/public/queues/sun/2024/ru?offset=" + "9" * 40, None),
    ("get", "/api/v1/allocation-runs/" + "9" * 40 + "/replay", None),
    ("get", "/api/v1/places?kindergarten=a%00b", None),
    ("get", "/api/v1/queue-entries/a%0Ab", None),
    ("get", "/api/v1/kindergartens/a%1Fb", None),
])
def test_bad_input_never_gives_a_5xx(client, method, path, body):
    r = client.request(method.upper(), path, json=body, headers=client.as_.admin())
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"


def test_a_database_that_does_not_answer_is_a_503_with_retry_after(tmp_path):
    engine = make_engine("postgresql+psycopg://kezek@127.0.0.1:1/kezek_queue", pool_pre_ping=False,
                         connect_args={"connect_timeout": 2})
    settings = Settings(state_dir=tmp_path)
    app = create_app(settings, queue=Queue(make_session_factory(engine), clock=lambda: NOW))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/kindergartens", headers=Callers(settings, "queue").service("gateway"))
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert c.get("/ready").status_code == 503
    engine.dispose()
