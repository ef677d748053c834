"""The notifications API: the operator view, the parent's inbox, delivery
receipts from the SMS gateway."""
from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from kezek.settings import Settings
from services.notifications.api import create_app
from services.notifications.domain import Channel, Outcome
from test_notifications_service import (  # noqa: F401  (fixtures)
    Scripted, clock, consume, dispatch, ev, issued, migrated_db, received, service,
)

API = "/api/v1/notifications"


@pytest.fixture
def client(service, clock, tmp_path):
    consume(service, received(parent="p1", locale="ru"))
    consume(service, received(app="a2", parent="p2", locale="en", phone="+77012345678", email="p2@example.kz"))
    consume(service, issued())
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "new@example.kg", "code": "482913",
        "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}))
    dispatch(service, Scripted(Channel.EMAIL), Scripted(Channel.INAPP, then=Outcome.DELIVERED))
    with TestClient(create_app(Settings(state_dir=tmp_path), service=service)) as c:
        yield c


def test_operator_sees_a_parents_messages_by_status_and_event(client):
    all_p1 = client.get(f"{API}/messages", params={"parent_id": "p1"}).json()
    assert {(m["kind"], m["channel"]) for m in all_p1} == {
        ("application_received", "email"), ("application_received", "inapp"),
        ("referral_issued", "sms"), ("referral_issued", "email"), ("referral_issued", "inapp")}
    queued = client.get(f"{API}/messages", params={"parent_id": "p1", "status": "queued"}).json()
    assert [m["channel"] for m in queued] == ["sms"]
    assert queued[0]["sms_segments"] == 1 and queued[0]["sms_encoding"] == "UCS-2"
    by_event = client.get(f"{API}/messages", params={"event_type": "referral.issued.v1"}).json()
    assert {m["channel"] for m in by_event} == {"sms", "email", "inapp"}


def test_operator_view_masks_contacts_and_hides_codes(client):
    [sms] = client.get(f"{API}/messages", params={"channel": "sms"}).json()
    assert sms["address"].startswith("+99670") and "123" not in sms["address"][6:-3]
    [code] = client.get(f"{API}/messages", params={"kind": "email_code"}).json()
    assert "482913" not in code["body"] and code["address"] == "n***@example.kg"


def test_a_wrong_filter_is_refused_naming_the_field(client):
    r = client.get(f"{API}/messages", params={"status": "lost"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


def test_parents_inbox_lists_only_their_messages_and_marks_them_read(client):
    inbox = client.get(f"{API}/inbox/p1").json()
    assert inbox["unread"] == 2 and {m["kind"] for m in inbox["messages"]} == {"application_received", "referral_issued"}
    first = inbox["messages"][0]["id"]
    assert client.post(f"{API}/inbox/p2/{first}/read").status_code == 404
    assert client.post(f"{API}/inbox/p1/{first}/read").status_code == 204
    assert client.get(f"{API}/inbox/p1").json()["unread"] == 1
    assert [m["kind"] for m in client.get(f"{API}/inbox/p2").json()["messages"]] == ["application_received"]


def test_gateway_receipt_marks_the_sms_delivered(client, service):
    dispatch(service, Scripted(Channel.SMS))
    [sms] = client.get(f"{API}/messages", params={"channel": "sms"}).json()
    assert sms["status"] == "sent"
    assert client.post(f"{API}/sms/receipts", json={"reference": sms["id"], "status": "delivered"}).status_code == 204
    assert client.get(f"{API}/messages/{sms['id']}").json()["status"] == "delivered"


def test_receipts_must_name_a_known_message(client):
    assert client.post(f"{API}/sms/receipts", json={"status": "delivered"}).status_code == 422
    r = client.post(f"{API}/sms/receipts", json={"reference": "nope", "status": "delivered"})
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "reference"


def test_health_and_readiness(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"
