"""Webhooks on a real broker, PostgreSQL and a real HTTP receiver on
127.0.0.1 that fails on demand: signed deliveries, retries with backoff, order
per subject (a failing delivery holds back its own subject only), the
delivery log, dead deliveries skipped by an administrator, and a replay from
an offset, driven through the admin API."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi.testclient import TestClient

from kezek.consumer import IDLE_FETCH_WAIT_MS
from kezek.db import unit_of_work
from kezek.migrations import upgrade
from kezek.relay import wait_until_relayed
from kezek.trust import Principal, ServiceKeys, service_token_authenticator
from kezek.web import create_service_app
from services.gateway.public import router
from services.gateway.public.api import PublicContext
from services.gateway.public.config import PublicSettings
from services.gateway.public.models import public_outbox
from services.gateway.public.runtime import PublicRuntime
from services.gateway.public.webhooks import SIGNATURE_HEADER, backoff, verify

pytestmark = pytest.mark.integration


class Administrator(httpx.Auth):
    """A fresh token of the `kezek` command acting for an administrator on
    every request (a token lives a minute)."""

    def __init__(self, keys: ServiceKeys):
        self.keys = keys

    def auth_flow(self, request):
        token = self.keys.sign("cli", "gateway", Principal(actor="admin:tests", role="admin"))
        request.headers["authorization"] = f"Bearer {token}"
        yield request


class Receiver:
    """A webhook endpoint: records what it accepts, answers 500 to what it is told to refuse."""

    def __init__(self):
        self.accepted: list[dict] = []
        self.refusals: Counter = Counter()   # event id -> how many more times to refuse
        self.always_refuse: set[str] = set()  # subjects
        self.requests = 0
        self.delay = 0.0                      # seconds each answer takes
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event = json.loads(body)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.requests += 1
                    refuse = event["subject"] in receiver.always_refuse or receiver.refusals[event["id"]] > 0
                    if refuse:
                        receiver.refusals[event["id"]] -= 1
                    else:
                        receiver.accepted.append({"event": event, "headers": dict(self.headers), "body": body})
                self.send_response(500 if refuse else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/kezek"

    def ids(self, subject: str | None = None) -> list[str]:
        with self.lock:
            return [a["event"]["id"] for a in self.accepted if subject in (None, a["event"]["subject"])]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(pg_url, kafka_bootstrap):
    url = pg_url("gateway")
    upgrade("gateway", url)
    settings = PublicSettings(env="test", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=f"w{uuid.uuid4().hex[:8]}",
                              webhook_backoff_seconds=0.2, webhook_max_attempts=3,
                              webhook_timeout_seconds=5)
    rt = PublicRuntime(settings, database_url=url)
    keys = ServiceKeys.from_settings(settings)
    app = create_service_app("gateway", authenticate=service_token_authenticator(keys, "gateway"))
    app.include_router(router)
    app.state.public = PublicContext(settings, database_url=url)
    receiver = Receiver()
    admin = TestClient(app)
    admin.auth = Administrator(keys)
    yield rt, admin, receiver
    receiver.close()
    app.state.public.engine.dispose()
    rt.engine.dispose()


def publish_public(rt, events: list[tuple[str, str]]) -> list[str]:
    """Public events (subject, kindergarten) through the public outbox and relay."""
    ids = []
    with unit_of_work(rt.sessions) as s:
        for subject, kg in events:
            e = public_outbox.add(s, "public.place.published.v1", subject,
                                  {"kindergarten_id": kg, "cohort": 2021, "language": "ky", "count": 1,
                                   "district": "41711100000000"})
            ids.append(e.id)
    relay = rt.relay()
    wait_until_relayed(relay)
    relay.close()
    return ids


def run_until(dispatcher, consumer, done, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consumer is not None:
            dispatcher.ingest_once(consumer, timeout_ms=200)
        dispatcher.replay_once()
        dispatcher.deliver_once()
        if done():
            return
        time.sleep(0.05)
    raise TimeoutError("webhook deliveries did not finish")


def test_the_webhook_ingest_lets_the_broker_hold_its_empty_fetches_as_the_consumers_do(env):
    """A quiet system's ingest asks the broker for the public topic's
    records a quarter as often as kafka-python's default would have it."""
    rt, _, _ = env
    dispatcher = rt.dispatcher()
    consumer = dispatcher.make_consumer()
    try:
        assert consumer.config["fetch_max_wait_ms"] == IDLE_FETCH_WAIT_MS > 500
    finally:
        consumer.close()
        dispatcher.close()


def test_deliveries_are_signed_retried_and_in_order_per_subject_and_a_failure_blocks_only_its_subject(env):
    rt, api, receiver = env
    r = api.post("/api/v1/public/admin/webhooks", json={"url": receiver.url, "event_types": ["public.place.published.v1"],
                                                        "description": "statistics office"})
    assert r.status_code == 201
    sub = r.json()
    secret = sub["secret"]
    assert "secret" not in api.get(f"/api/v1/public/admin/webhooks/{sub['id']}").json()

    events = [("kg-a", "kg-a"), ("kg-b", "kg-b"), ("kg-a", "kg-a"), ("kg-b", "kg-b"), ("kg-a", "kg-a"), ("kg-c", "kg-c")]
    ids = publish_public(rt, events)
    a1 = ids[0]
    receiver.refusals[a1] = 2   # the first event of kg-a fails twice, then succeeds

    dispatcher = rt.dispatcher()
    consumer = dispatcher.make_consumer()
    try:
        # kg-b and kg-c go through while kg-a waits on its failing first event.
        run_until(dispatcher, consumer, lambda: len(receiver.ids("kg-b")) == 2 and len(receiver.ids("kg-c")) == 1)
        assert receiver.ids("kg-a") == [], "later kg-a events wait behind the failing one"
        run_until(dispatcher, consumer, lambda: len(receiver.ids()) == 6)
    finally:
        consumer.close()
        dispatcher.close()

    for subject in ("kg-a", "kg-b", "kg-c"):
        assert receiver.ids(subject) == [i for i, (s, _) in zip(ids, events) if s == subject]
    for a in receiver.accepted:
        assert verify(secret, a["headers"][SIGNATURE_HEADER], a["body"])
        assert not verify("another secret", a["headers"][SIGNATURE_HEADER], a["body"])
        assert a["headers"]["Kezek-Event-Id"] == a["event"]["id"]

    log = api.get(f"/api/v1/public/admin/webhooks/{sub['id']}/deliveries").json()
    assert [d["status"] for d in log] == ["delivered"] * 6
    first = next(d for d in log if d["event_id"] == a1)
    detail = api.get(f"/api/v1/public/admin/webhooks/deliveries/{first['id']}").json()
    assert [x["status_code"] for x in detail["log"]] == [500, 500, 204]
    assert detail["attempts"] == 3 and first["partition"] >= 0 and first["offset"] >= 0


def test_two_gateway_replicas_deliver_each_event_once_and_in_order_per_subject(env):
    rt, api, receiver = env
    receiver.delay = 0.05
    r = api.post("/api/v1/public/admin/webhooks", json={"url": receiver.url, "event_types": ["public.place.published.v1"]})
    assert r.status_code == 201
    events = [(f"kg-{i % 4}", f"kg-{i % 4}") for i in range(12)]
    ids = publish_public(rt, events)
    first, second = rt.dispatcher(), rt.dispatcher()
    consumer = first.make_consumer()
    try:
        deadline = time.monotonic() + 60
        while len({d for d in receiver.ids()}) < 12 and time.monotonic() < deadline:
            first.ingest_once(consumer, timeout_ms=200)
            replicas = [threading.Thread(target=dsp.deliver_once) for dsp in (first, second)]
            for t in replicas:
                t.start()
            for t in replicas:
                t.join()
    finally:
        consumer.close()
        first.close()
        second.close()
    assert receiver.requests == 12 and sorted(receiver.ids()) == sorted(ids)
    for subject in {s for s, _ in events}:
        assert receiver.ids(subject) == [i for i, (s, _) in zip(ids, events) if s == subject]


def test_dead_delivery_holds_its_subject_until_skipped_and_replay_delivers_again_from_an_offset(env):
    rt, api, receiver = env
    sub = api.post("/api/v1/public/admin/webhooks", json={"url": receiver.url, "event_types": ["*"]}).json()
    receiver.always_refuse.add("kg-x")
    ids = publish_public(rt, [("kg-x", "kg-x"), ("kg-x", "kg-x"), ("kg-y", "kg-y")])

    dispatcher = rt.dispatcher()
    consumer = dispatcher.make_consumer()
    try:
        def dead():
            return [d for d in api.get(f"/api/v1/public/admin/webhooks/{sub['id']}/deliveries",
                                       params={"status": "dead"}).json()]
        run_until(dispatcher, consumer, lambda: len(dead()) == 1 and len(receiver.ids("kg-y")) == 1)
        (dead_one,) = dead()
        assert dead_one["event_id"] == ids[0] and dead_one["attempts"] == 3
        pending = api.get(f"/api/v1/public/admin/webhooks/{sub['id']}/deliveries", params={"status": "pending"}).json()
        assert [d["event_id"] for d in pending] == [ids[1]] and pending[0]["attempts"] == 0, \
            "the second kg-x event is never tried while the first is dead"

        receiver.always_refuse.clear()
        assert api.post(f"/api/v1/public/admin/webhooks/deliveries/{dead_one['id']}/skip").json()["status"] == "skipped"
        run_until(dispatcher, consumer, lambda: receiver.ids("kg-x") == [ids[1]])

        # Replay everything from offset 0: each event is delivered once more, in order per subject.
        r = api.post(f"/api/v1/public/admin/webhooks/{sub['id']}/replay", json={"from_offset": 0})
        assert r.status_code == 202
        run_until(dispatcher, None, lambda: len(receiver.ids()) == 2 + 3)
    finally:
        consumer.close()
        dispatcher.close()
    assert receiver.ids("kg-x") == [ids[1], ids[0], ids[1]]
    assert receiver.ids("kg-y") == [ids[2], ids[2]]
    (replay,) = api.get(f"/api/v1/public/admin/webhooks/{sub['id']}/replays").json()
    assert replay["status"] == "done" and replay["queued"] == 3


def test_subscription_input_is_refused_with_the_field_named(env):
    _, api, receiver = env
    r = api.post("/api/v1/public/admin/webhooks", json={"url": "ftp://example.kg/x", "event_types": ["*"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
    r = api.post("/api/v1/public/admin/webhooks", json={"url": receiver.url, "event_types": ["application.submitted.v1"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "event_types"
    r = api.post("/api/v1/public/admin/webhooks/nope/replay", json={"from_offset": 0})
    assert r.status_code == 404


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, 2.0, 30.0) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_paused_subscription_gets_no_delivery_and_a_deleted_one_leaves_no_log(env):
    rt, api, receiver = env
    sub = api.post("/api/v1/public/admin/webhooks", json={"url": receiver.url, "event_types": ["*"]}).json()
    assert api.patch(f"/api/v1/public/admin/webhooks/{sub['id']}", json={"active": False}).json()["active"] is False
    publish_public(rt, [("kg-p", "kg-p")])
    dispatcher = rt.dispatcher()
    consumer = dispatcher.make_consumer()
    try:
        for _ in range(10):
            dispatcher.ingest_once(consumer, timeout_ms=300)
            dispatcher.deliver_once()
    finally:
        consumer.close()
        dispatcher.close()
    assert receiver.requests == 0
    assert api.delete(f"/api/v1/public/admin/webhooks/{sub['id']}").status_code == 204
    assert api.get(f"/api/v1/public/admin/webhooks/{sub['id']}").status_code == 404
    assert api.get("/api/v1/public/admin/webhooks").json() == []


def test_deployments_sharing_a_broker_ingest_in_consumer_groups_of_their_own():
    """Another deployment's (or test's) members in the group would rebalance
    this one's ingest, and stall it while one of them is gone."""
    from services.gateway.public.webhooks import Dispatcher

    groups = {prefix: Dispatcher(None, PublicSettings(env="test", kafka_topic_prefix=prefix)).group
              for prefix in ("kezek", "kg", "kz")}
    assert groups == {"kezek": "gateway-webhooks", "kg": "kg.gateway-webhooks", "kz": "kz.gateway-webhooks"}
