"""The notifications API behind the trust boundary: the parent's inbox for
that parent only, the operators' views for operators and admins only, SMS
delivery receipts only with the provider's signature; every state change in
the audit trail with its verified actor; bad numbers a 422, the database
down a 503."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from kezek.db import make_engine, make_session_factory
from kezek.infra.procs import free_port, wait_until
from kezek.problems import Unavailable
from kezek.settings import Settings
from kezek.trust import ServiceKeys, parent_principal, staff_principal
from services.notifications import signature
from services.notifications.api import create_app
from services.notifications.channels import HttpSms
from services.notifications.devservers import DevSmsGateway
from services.notifications.domain import Channel, Outcome
from services.notifications.runtime import NotificationSettings
from services.notifications.service import NotificationService, ReceiptReplayed
from test_notifications_service import (  # noqa: F401  (fixtures)
    TZ, Scripted, clock, consume, dispatch, ev, issued, messages, migrated_db, received, service,
)

API = "/api/v1/notifications"
SETTINGS = Settings(_env_file=None)
KEYS = ServiceKeys.from_settings(SETTINGS)
RECEIPT_SECRET = signature.development_secret(SETTINGS.secret_key.get_secret_value())


def bearer(caller: str, actor=None) -> dict:
    return {"authorization": f"Bearer {KEYS.sign(caller, 'notifications', actor)}"}


def as_parent(parent_id: str) -> dict:
    """The gateway, acting for the parent it signed in."""
    return bearer("gateway", parent_principal(parent_id))


# Made at each call: a token lives a minute, a long run outlives one made at import.
def OPERATOR() -> dict:
    return bearer("verification", staff_principal(6, "operator"))


def ADMIN_AT_CONSOLE() -> dict:
    return bearer("cli", staff_principal("console", "admin"))


def CASEWORKER() -> dict:
    return bearer("verification", staff_principal(1, "caseworker", district="Bishkek/Leninsky"))


def A_SERVICE() -> dict:
    return bearer("queue")


def signed(payload: dict, *, at: float | None = None, secret: bytes = RECEIPT_SECRET) -> dict:
    body = json.dumps(payload).encode()
    return {"content": body, "headers": {"content-type": "application/json",
                                         signature.DEFAULT_HEADER: signature.sign(secret, body, int(at or time.time()))}}


@pytest.fixture
def client(service, clock, tmp_path):
    consume(service, received(parent="p1", locale="ru"))
    consume(service, received(app="a2", parent="p2", locale="en", phone="+77012345678", email="p2@example.kz"))
    consume(service, issued())
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "new@example.kg", "code": "482913",
        "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}))
    dispatch(service, Scripted(Channel.EMAIL), Scripted(Channel.INAPP, then=Outcome.DELIVERED))
    with TestClient(create_app(Settings(_env_file=None, state_dir=tmp_path), service=service)) as c:
        yield c


def sent_sms(client, service) -> dict:
    dispatch(service, Scripted(Channel.SMS))
    [sms] = client.get(f"{API}/messages", params={"channel": "sms"}, headers=OPERATOR()).json()
    assert sms["status"] == "sent"
    return sms


def trail(client, message_id: str) -> list[tuple[str, str]]:
    rows = client.get(f"{API}/audit", params={"message_id": message_id}, headers=OPERATOR()).json()
    return [(r["action"], r["actor"]) for r in rows]


# ------------------------------------------------------------ the operators' views

def test_operator_sees_a_parents_messages_by_status_and_event(client):
    get = lambda **p: client.get(f"{API}/messages", params=p, headers=OPERATOR()).json()  # noqa: E731
    assert {(m["kind"], m["channel"]) for m in get(parent_id="p1")} == {
        ("application_received", "email"), ("application_received", "inapp"),
        ("referral_issued", "sms"), ("referral_issued", "email"), ("referral_issued", "inapp")}
    queued = get(parent_id="p1", status="queued")
    assert [m["channel"] for m in queued] == ["sms"]
    assert queued[0]["sms_segments"] == 1 and queued[0]["sms_encoding"] == "UCS-2"
    assert {m["channel"] for m in get(event_type="referral.issued.v1")} == {"sms", "email", "inapp"}


def test_operator_view_masks_contacts_and_hides_codes(client):
    [sms] = client.get(f"{API}/messages", params={"channel": "sms"}, headers=OPERATOR()).json()
    assert sms["address"].startswith("+99670") and "123" not in sms["address"][6:-3]
    [code] = client.get(f"{API}/messages", params={"kind": "email_code"}, headers=OPERATOR()).json()
    assert "482913" not in code["body"] and code["address"] == "n***@example.kg"


def test_operator_views_are_open_to_an_admin_at_the_console(client):
    assert client.get(f"{API}/dead-letters", headers=ADMIN_AT_CONSOLE()).status_code == 200
    assert len(client.get(f"{API}/messages", headers=ADMIN_AT_CONSOLE()).json()) == 8


@pytest.mark.parametrize("who", ["parent", "service", "caseworker", "anonymous"])
@pytest.mark.parametrize("path", ["/messages", "/dead-letters", "/audit", "/messages/x"])
def test_operator_views_are_refused_to_parents_services_and_other_staff(client, who, path):
    headers = {"parent": as_parent("p1"), "service": A_SERVICE(), "caseworker": CASEWORKER(), "anonymous": {}}[who]
    r = client.get(f"{API}{path}", headers=headers)
    assert r.status_code == (401 if who == "anonymous" else 403)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_retry_is_refused_to_a_parent(client):
    assert client.post(f"{API}/messages/x/retry", headers=as_parent("p1")).status_code == 403


def test_a_wrong_filter_is_refused_naming_the_field(client):
    r = client.get(f"{API}/messages", params={"status": "lost"}, headers=OPERATOR())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


@pytest.mark.parametrize("path,params,field", [
    ("/messages", {"offset": 10**30}, "offset"),
    ("/messages", {"offset": -1}, "offset"),
    ("/messages", {"limit": 10**6}, "limit"),
    ("/dead-letters", {"offset": 2**63}, "offset"),
    ("/audit", {"after_id": 2**64}, "after_id"),
    ("/messages", {"parent_id": "p\x001"}, "parent_id"),
])
def test_out_of_range_numbers_and_odd_strings_are_422_naming_the_field(client, path, params, field):
    r = client.get(f"{API}{path}", params=params, headers=OPERATOR())
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == [field]


def test_an_unknown_message_is_404_with_a_code(client):
    r = client.get(f"{API}/messages/nope", headers=OPERATOR())
    assert r.status_code == 404 and r.json()["code"] == "message_not_found"
    assert r.json()["errors"][0]["field"] == "message_id"


# ------------------------------------------------------------ the parent's inbox

def test_a_parent_reads_only_their_own_inbox(client):
    inbox = client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()
    assert inbox["unread"] == 2 and {m["kind"] for m in inbox["messages"]} == {"application_received", "referral_issued"}
    r = client.get(f"{API}/inbox/p1", headers=as_parent("p2"))
    assert r.status_code == 404 and "referral" not in r.text


def test_a_parent_marks_only_their_own_messages_read(client):
    first = client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()["messages"][0]["id"]
    # Another family: through their own inbox path, or through ours.
    assert client.post(f"{API}/inbox/p2/{first}/read", headers=as_parent("p2")).status_code == 404
    assert client.post(f"{API}/inbox/p1/{first}/read", headers=as_parent("p2")).status_code == 404
    assert client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()["unread"] == 2
    assert client.post(f"{API}/inbox/p1/{first}/read", headers=as_parent("p1")).status_code == 204
    assert client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()["unread"] == 1
    p2 = client.get(f"{API}/inbox/p2", headers=as_parent("p2")).json()
    assert [m["kind"] for m in p2["messages"]] == ["application_received"]


def test_the_inbox_is_refused_to_operators_services_and_anonymous_callers(client):
    assert client.get(f"{API}/inbox/p1", headers=OPERATOR()).status_code == 403
    assert client.get(f"{API}/inbox/p1", headers=A_SERVICE()).status_code == 403
    assert client.get(f"{API}/inbox/p1").status_code == 401
    forged = {"authorization": "Bearer " + KEYS.sign("gateway", "queue", parent_principal("p1"))}
    assert client.get(f"{API}/inbox/p1", headers=forged).status_code == 401    # a token for another service


def test_a_read_mark_is_audited_with_the_verified_parent(client):
    first = client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()["messages"][0]["id"]
    client.post(f"{API}/inbox/p1/{first}/read", headers={**as_parent("p1"), "x-actor": "admin:forged"})
    client.post(f"{API}/inbox/p1/{first}/read", headers=as_parent("p1"))      # read already: no change
    assert trail(client, first) == [("notification.queued", "service:notifications"),
                                    ("notification.sent", "service:notifications"),
                                    ("notification.delivered", "service:notifications"),
                                    ("notification.read", "parent:p1")]


# ------------------------------------------------------------ signed receipts

def test_an_authentic_receipt_marks_the_sms_delivered_and_is_audited_as_the_provider(client, service):
    sms = sent_sms(client, service)
    r = client.post(f"{API}/sms/receipts", **signed({"reference": sms["id"], "status": "delivered"}))
    assert r.status_code == 204
    assert client.get(f"{API}/messages/{sms['id']}", headers=OPERATOR()).json()["status"] == "delivered"
    assert trail(client, sms["id"])[-1] == ("notification.delivered", "provider:sms")


@pytest.mark.parametrize("forgery", ["unsigned", "wrong secret", "body changed", "malformed", "stale"])
def test_a_forged_receipt_is_refused_and_changes_nothing(client, service, forgery):
    sms = sent_sms(client, service)
    receipt = {"reference": sms["id"], "status": "delivered"}
    call = {"unsigned": {"json": receipt},
            "wrong secret": signed(receipt, secret=b"guessed"),
            "malformed": {"json": receipt, "headers": {signature.DEFAULT_HEADER: "t=now,v1=abc"}},
            "stale": signed(receipt, at=time.time() - 3600)}.get(forgery)
    if forgery == "body changed":
        call = signed({"reference": sms["id"], "status": "failed"})
        call["content"] = json.dumps(receipt).encode()
    r = client.post(f"{API}/sms/receipts", **call)
    assert r.status_code == 401 and r.json()["code"].startswith("receipt_")
    assert client.get(f"{API}/messages/{sms['id']}", headers=OPERATOR()).json()["status"] == "sent"
    assert ("notification.delivered", "provider:sms") not in trail(client, sms["id"])


def test_a_replayed_receipt_is_refused(client, service):
    sms = sent_sms(client, service)
    receipt = signed({"reference": sms["id"], "status": "delivered"})
    assert client.post(f"{API}/sms/receipts", **receipt).status_code == 204
    r = client.post(f"{API}/sms/receipts", **receipt)
    assert r.status_code == 401 and r.json()["code"] == "receipt_replayed"


def test_a_receipts_signature_is_forgotten_once_past_twice_its_window_within_ten_seconds_of_receipts(service):
    from services.notifications.models import ReceiptSignature
    from services.notifications.usecases.dispatching import FORGET_SIGNATURES_EVERY

    window, t = 300, int(time.time())

    def take(digest: str, at: int) -> None:
        assert service.record_receipt(message_id="none", delivered=True, signed=signature.Signed(at, digest),
                                      window=window) is False

    def kept() -> set[str]:
        with service.sessions() as s:
            return set(s.scalars(sa.select(ReceiptSignature.digest)))

    take("a", t)
    take("b", t + 5)
    take("c", t + 2 * window + 4)           # `a` is past twice the window: forgotten
    assert kept() == {"b", "c"}
    take("d", t + 2 * window + 8)           # `b` is past too: kept until the next forgetting, ten seconds on
    assert kept() == {"b", "c", "d"}
    take("e", t + 2 * window + 4 + FORGET_SIGNATURES_EVERY)
    assert kept() == {"c", "d", "e"}
    with pytest.raises(ReceiptReplayed):    # a signature in its window is never forgotten
        take("d", t + 2 * window + 5 + FORGET_SIGNATURES_EVERY)


def test_a_receipt_signed_with_the_previous_secret_counts_during_a_rotation(service, tmp_path):
    from services.notifications.runtime import NotificationSettings

    extra = NotificationSettings(_env_file=None, sms_receipt_secret="new-secret-" + "x" * 32,
                                 sms_receipt_previous_secret="old-secret-" + "y" * 32)
    with TestClient(create_app(Settings(_env_file=None, state_dir=tmp_path), service=service, extra=extra)) as c:
        receipt = {"reference": "unknown", "status": "delivered"}
        assert c.post(f"{API}/sms/receipts", **signed(receipt, secret=b"old-secret-" + b"y" * 32)).status_code == 404
        assert c.post(f"{API}/sms/receipts", **signed(receipt, secret=RECEIPT_SECRET)).status_code == 401


def test_receipts_must_name_a_known_message(client):
    assert client.post(f"{API}/sms/receipts", **signed({"status": "delivered"})).status_code == 422
    r = client.post(f"{API}/sms/receipts", **signed({"reference": "nope", "status": "delivered"}))
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "reference"
    assert r.json()["code"] == "receipt_message_unknown"
    assert r.json()["detail"] == "reference: no message with this id or reference"


def test_the_receipts_in_hand_by_default_fit_in_the_default_pool_with_room_for_the_inbox_and_readiness():
    # Receipts beyond the pool's kept connections would each open a server
    # process and close it again (bench/README.md, "A connection pool the
    # size of the work"); the parents' inbox and /ready need one each too.
    in_hand = NotificationSettings(_env_file=None).sms_receipts_in_hand
    assert in_hand + 2 <= Settings(_env_file=None).db_pool_size


def test_receipts_beyond_those_in_hand_are_answered_503_with_retry_after_while_health_answers(
        service, tmp_path, monkeypatch):
    entered, release = threading.Semaphore(0), threading.Event()
    record = service.record_receipt

    def slow(**kw):
        entered.release()
        release.wait(10)
        return record(**kw)

    monkeypatch.setattr(service, "record_receipt", slow)
    extra = NotificationSettings(_env_file=None, sms_receipts_in_hand=2)
    app = create_app(Settings(_env_file=None, state_dir=tmp_path), service=service, extra=extra)
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        def receipt(ref):
            return c.post(f"{API}/sms/receipts", **signed({"reference": ref, "status": "delivered"}))

        held = [pool.submit(receipt, ref) for ref in ("m1", "m2")]
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        busy = receipt("m3")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["code"] == "receipts_busy" and "2 receipts" in busy.json()["detail"]
        assert c.get("/health").status_code == 200
        release.set()
        assert [f.result(timeout=10).status_code for f in held] == [404, 404]
        # Given back even when the receipt was refused: the next one is recorded.
        assert receipt("m3").status_code == 404 and app.state.receipts_in_hand.count == 0


def test_every_receipt_lands_when_the_provider_posts_more_at_once_than_the_api_takes_in_hand(
        service, tmp_path, monkeypatch):
    """The development gateway (four senders) against the API over HTTP,
    with one receipt in hand at a time: the refused ones come again after
    their Retry-After until each is taken."""
    for n in range(12):
        consume(service, received(app=f"a{n}", parent=f"p{n}", phone=f"+9967001234{n:02}"))
        consume(service, issued(app=f"a{n}", ref=f"r{n}"))
    record, busy = service.record_receipt, []

    def slow(**kw):
        time.sleep(0.05)
        return record(**kw)

    monkeypatch.setattr(service, "record_receipt", slow)
    extra = NotificationSettings(_env_file=None, sms_receipts_in_hand=1)
    app = create_app(Settings(_env_file=None, state_dir=tmp_path), service=service, extra=extra)
    take = app.state.receipts_in_hand.take

    def counted():
        try:
            take()
        except Unavailable:
            busy.append(1)
            raise
    monkeypatch.setattr(app.state.receipts_in_hand, "take", counted)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    gateway = DevSmsGateway(receipt_senders=4).start()
    try:
        wait_until(lambda: server.started, 30, "the notifications API")
        sms = HttpSms(gateway.url, callback_url=f"http://127.0.0.1:{port}{API}/sms/receipts")
        dispatch(service, sms, sms)         # a batch of ten, then the rest
        assert len(gateway.accepted) == 12
        wait_until(lambda: {m.status for m in messages(service, channel="sms")} == {"delivered"}, 60,
                   "every SMS delivered")
        assert busy and gateway.receipts_waiting == 0 and gateway.receipts_given_up == 0
    finally:
        gateway.stop()
        server.should_exit = True


# ------------------------------------------------------------ retries by an operator

def test_an_operator_sends_a_dead_letter_again_and_the_retry_is_audited(client, service, clock):
    sms = sent_sms(client, service)
    undelivered = signed({"reference": sms["id"], "status": "undelivered"})
    assert client.post(f"{API}/sms/receipts", **undelivered).status_code == 204
    assert [d["message"]["id"] for d in client.get(f"{API}/dead-letters", headers=OPERATOR()).json()] == [sms["id"]]
    r = client.post(f"{API}/messages/{sms['id']}/retry", headers=OPERATOR())
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["attempts"] == 0
    assert client.get(f"{API}/dead-letters", headers=OPERATOR()).json() == []
    assert trail(client, sms["id"])[-2:] == [("notification.dead_lettered", "provider:sms"),
                                             ("notification.retried", "staff:6")]
    again = client.post(f"{API}/messages/{sms['id']}/retry", headers=OPERATOR())
    assert again.status_code == 409 and again.json()["code"] == "retry_not_failed"


def test_a_code_is_never_sent_again_after_it_failed(client, service, clock):
    consume(service, ev("registration.email_code_issued.v1", {
        "email": "late@example.kg", "code": "111222",
        "expires_at": (clock.now + timedelta(minutes=10)).isoformat()}))
    dispatch(service, Scripted(Channel.EMAIL, then=Outcome.PERMANENT))
    [code] = client.get(f"{API}/messages", params={"kind": "email_code", "status": "failed"},
                        headers=OPERATOR()).json()
    r = client.post(f"{API}/messages/{code['id']}/retry", headers=ADMIN_AT_CONSOLE())
    assert r.status_code == 409 and r.json()["code"] == "retry_secret_gone"


# ------------------------------------------------------------ health, outage

def test_health_and_readiness(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json()["status"] == "ready"


def test_the_database_down_is_a_503_with_retry_after(tmp_path):
    engine = make_engine(f"postgresql+psycopg://kezek@127.0.0.1:{free_port()}/kezek_notifications")
    down = NotificationService(make_session_factory(engine), tz=TZ, cabinet_url="https://kezek.kg/cabinet")
    with TestClient(create_app(Settings(_env_file=None, state_dir=tmp_path), service=down)) as c:
        for method, path, headers in (("GET", "/messages", OPERATOR()), ("GET", "/inbox/p1", as_parent("p1")),
                                      ("POST", "/inbox/p1/m1/read", as_parent("p1"))):
            r = c.request(method, f"{API}{path}", headers=headers)
            assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, (path, r.text)
        receipt = c.post(f"{API}/sms/receipts", **signed({"reference": "m1", "status": "delivered"}))
        assert receipt.status_code == 503
    engine.dispose()


@pytest.mark.parametrize("lang,words", [
    ("kk", "жолдама"), ("en", "referral"), ("ky", "жолдомо")])
def test_the_inbox_renders_each_message_in_the_readers_language(client, lang, words):
    sent_in_russian = client.get(f"{API}/inbox/p1", headers=as_parent("p1")).json()["messages"]
    issued_ru = next(m for m in sent_in_russian if m["kind"] == "referral_issued")
    assert "направлени" in (issued_ru["title"] + issued_ru["text"]).lower()
    read = client.get(f"{API}/inbox/p1", params={"lang": lang}, headers=as_parent("p1")).json()["messages"]
    issued = next(m for m in read if m["kind"] == "referral_issued")
    text = (issued["title"] + " " + issued["text"]).lower()
    assert words in text and "направлени" not in text
    assert [m["id"] for m in read] == [m["id"] for m in sent_in_russian]


def test_an_inbox_message_without_stored_parameters_is_shown_as_sent(client, service):
    import sqlalchemy as sa

    from services.notifications.models import Message

    with service.sessions.begin() as s:
        s.execute(sa.update(Message).where(Message.channel == "inapp").values(params=None))
    read = client.get(f"{API}/inbox/p1", params={"lang": "kk"}, headers=as_parent("p1")).json()["messages"]
    assert any("направлени" in (m["title"] + m["text"]).lower() for m in read)
