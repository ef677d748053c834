"""The queue's HTTP API: versioned, documented, and bad input is a 4xx that
names the field, never a 500."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from kezek.db import make_engine, make_session_factory
from kezek.migrations import upgrade
from kezek.settings import Settings
from services.queue.api import create_app
from services.queue.usecases import Queue

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
ADMIN = {"X-Actor": "admin:1"}


@pytest.fixture
def client(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    upgrade("queue", url)
    engine = make_engine(url)
    service = Queue(make_session_factory(engine), clock=lambda: NOW)
    app = create_app(Settings(state_dir=tmp_path), queue=service)
    with TestClient(app) as c:
        c.service = service
        for kid in ("sun", "moon"):
            r = c.put(f"/api/v1/kindergartens/{kid}", headers=ADMIN,
                      json={"name": kid.title(), "district": "Leninsky", "address": "Street 1", "languages": ["ru", "ky"]})
            assert r.status_code == 200, r.text
        yield c
    engine.dispose()


def join(c, pin="21506202400011", **kw):
    body = {"pin": pin, "surname": "Asanov", "name": "Aibek", "language": "ru", "preferences": ["sun"], **kw}
    return c.post("/api/v1/queue-entries", json=body, headers={"X-Actor": "parent:1"})


def fields(r):
    return [e["field"] for e in r.json()["errors"]]


def test_openapi_documents_the_versioned_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/queue-entries", "/api/v1/queue-entries/{application_id}/positions",
              "/api/v1/public/queues/{kindergarten}/{cohort}/{language}", "/api/v1/kindergartens/{kindergarten}/places",
              "/api/v1/audit", "/api/v1/policy", "/api/v1/allocation-runs/{run_id}/replay"):
        assert p in paths


def test_join_then_read_the_entry_with_a_masked_name(client):
    r = join(client)
    assert r.status_code == 201, r.text
    entry = client.get(f"/api/v1/queue-entries/{r.json()['id']}").json()
    assert entry["status"] == "queued" and entry["child"] == "A***** A." and entry["cohort"] == 2024


def test_second_entry_for_a_child_pin_is_a_409_naming_the_pin(client):
    join(client)
    r = join(client, parent_id="someone-else")
    assert r.status_code == 409 and fields(r) == ["pin"]


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


def test_writes_need_to_say_who_acts(client):
    r = client.post("/api/v1/kindergartens/sun/places", json={"cohort": 2024, "language": "ru", "count": 1})
    assert r.status_code == 422 and fields(r) == ["X-Actor"]


def test_publishing_places_then_the_allocator_issues_a_referral(client):
    entry = join(client).json()
    r = client.post("/api/v1/kindergartens/sun/places", headers={"X-Actor": "kindergarten:sun"},
                    json={"cohort": 2024, "language": "ru", "count": 2})
    assert r.status_code == 201 and r.json()["free"] == 2
    client.service.allocation.process_requests()
    got = client.get(f"/api/v1/queue-entries/{entry['id']}").json()
    assert got["status"] == "referred" and got["referral"]["kindergarten"] == "sun"
    [record] = client.get(f"/api/v1/queue-entries/{entry['id']}/allocations").json()
    assert record["inputs"]["free_seen"] == [{"kindergarten": "sun", "reserved": 0, "open": 2}]
    [run] = client.get("/api/v1/allocation-runs").json()
    assert client.get(f"/api/v1/allocation-runs/{run['run_id']}/replay").json()["matches"] is True


def test_withdrawing_more_than_free_is_a_409_naming_count(client):
    client.post("/api/v1/kindergartens/sun/places", headers=ADMIN, json={"cohort": 2024, "language": "ru", "count": 1})
    r = client.post("/api/v1/kindergartens/sun/places/withdrawal", headers=ADMIN,
                    json={"cohort": 2024, "language": "ru", "count": 3})
    assert r.status_code == 409 and fields(r) == ["count"]


def test_publishing_for_an_unknown_kindergarten_is_a_404(client):
    r = client.post("/api/v1/kindergartens/nowhere/places", headers=ADMIN, json={"cohort": 2024, "language": "ru", "count": 1})
    assert r.status_code == 404 and fields(r) == ["kindergarten"]


def test_positions_come_with_an_explanation(client):
    join(client, pin="21506202400011", queue_date="2026-01-01T10:00:00+06:00")
    me = join(client, pin="21506202400012", name="Bek", preferences=["sun", "moon"],
              queue_date="2026-02-01T10:00:00+06:00").json()
    [sun, moon] = client.get(f"/api/v1/queue-entries/{me['id']}/positions").json()
    assert (sun["position"], moon["position"]) == (2, 1)
    assert "1 in category general with an earlier queue date" in sun["explanation"]


def test_public_queue_is_anonymised(client):
    join(client, patronymic="Talantovich")
    r = client.get("/api/v1/public/queues/sun/2024/ru")
    assert r.status_code == 200
    [entry] = r.json()["entries"]
    assert entry["child"] == "A***** A. T." and "pin" not in entry and "parent_id" not in entry


def test_removal_then_the_pin_may_join_again_with_a_new_queue_date(client):
    entry = join(client).json()
    r = client.post(f"/api/v1/queue-entries/{entry['id']}/removal", headers={"X-Actor": "parent:1"},
                    json={"reason": "moved"})
    assert r.json()["status"] == "removed"
    assert join(client).status_code == 201


def test_policy_changes_are_versioned_and_bad_values_name_the_field(client):
    r = client.put("/api/v1/policy", headers=ADMIN, json={"changes": {"stoplist_days": 14}, "reason": "decree"})
    assert r.status_code == 200 and r.json()["policy"]["stoplist_days"] == 14
    r = client.put("/api/v1/policy", headers=ADMIN, json={"changes": {"stoplist_days": "x"}, "reason": "typo"})
    assert r.status_code == 422 and fields(r) == ["policy.stoplist_days"]
    assert [h["reason"] for h in client.get("/api/v1/policy/history").json()] == ["decree"]
    assert any(e["action"] == "policy.changed" for e in client.get("/api/v1/audit").json())


def test_unknown_entry_is_a_404_naming_the_field(client):
    r = client.get("/api/v1/queue-entries/nope")
    assert r.status_code == 404 and fields(r) == ["application_id"]
