"""Kezek running for real, for headless Chromium, wired the way `make run`
wires it (kezek.supervisor.Supervisor): every service's API under `kezek
serve`, every service's outbox relay (`kezek relay`), every consumer and
background loop (`kezek consume`: the queue's consumer of
application.submitted, its allocator and referral-workflow starter, the
notifications consumer and dispatchers ...) and the workflow worker (`kezek
worker`: the real ReferralWorkflow with the activities kezek.wiring finds).
They run on the suite's Kafka broker and Temporal dev server, in a topic
prefix and a Temporal namespace of their own, and mail through a real SMTP
server (aiosmtpd) that the tests read. An administrator's acts (the
kindergartens, publishing places) go through the queue's HTTP API."""
from __future__ import annotations

import email
import re
import threading
import time
import uuid
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from kezek.events import aggregates
from kezek.infra.kafka import ensure_topics
from kezek.infra.procs import free_port, wait_until
from kezek.settings import SERVICES, Settings
from kezek.supervisor import PUBLIC_TOPIC_SUFFIX, Supervisor
from tests.fakes.gateway import KINDERGARTENS
from tests.temporal_namespaces import register_namespace

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


class Administrator(httpx.Auth):
    """An administrator's acts as the `kezek` command makes them: a fresh
    service token of the console (`cli`) acting for an admin on each request."""

    def __init__(self, settings: Settings):
        from kezek.trust import ServiceKeys

        self.keys = ServiceKeys.from_settings(settings)

    def auth_flow(self, request):
        from kezek.trust import staff_principal

        token = self.keys.sign("cli", "queue", staff_principal("browser-tests", "admin"))
        request.headers["authorization"] = f"Bearer {token}"
        yield request


class Mailbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def text_to(self, address: str) -> list[str]:
        with self.lock:
            found = [m for m in self.messages if address in str(m.get("To", ""))]
        out = []
        for m in found:
            part = m.get_body(preferencelist=("plain", "html"))
            out.append(part.get_content() if part else "")
        return out

    def wait_for(self, address: str, pattern: str, timeout: float = 60, after: int = 0) -> str:
        """The first match of `pattern` in a message to `address` beyond the
        first `after` messages."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.text_to(address)[after:]:
                m = re.search(pattern, text)
                if m:
                    return m.group(1) if m.groups() else m.group(0)
            time.sleep(0.2)
        raise AssertionError(f"no mail to {address} matching {pattern!r} in {timeout}s: {self.text_to(address)}")


class Portal:
    def __init__(self, workdir: Path, bootstrap: str, temporal_address: str, country: str = "KG",
                 database_url: str = ""):
        """`database_url`: empty for SQLite files in `workdir`; a PostgreSQL
        URL with `{service}` for a database per service."""
        self.workdir = workdir
        self.prefix = f"b{uuid.uuid4().hex[:8]}"
        ports = {f"{s}_port": free_port() for s in SERVICES}
        self.smtp_port = free_port()
        # Outside development, with a key of its own: the sealed e-mail codes
        # and links must open with the deployment's key, not the default one.
        self.settings = Settings(
            env="test", country=country, state_dir=workdir, database_url=database_url, kafka_bootstrap=bootstrap,
            kafka_topic_prefix=self.prefix, temporal_address=temporal_address, temporal_namespace=self.prefix,
            smtp_host="127.0.0.1", smtp_port=self.smtp_port, log_json=True,
            secret_key=f"browser-walk-{uuid.uuid4().hex}", **ports)
        # Chromium keeps Secure cookies on http://localhost (a secure context).
        self.url = f"http://localhost:{ports['gateway_port']}"
        self.mailbox = Mailbox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.supervisor = Supervisor(self.settings, postgres=False)
        self.queue = httpx.Client(base_url=self.settings.url_of("queue"), auth=Administrator(self.settings),
                                  timeout=30)

    def child_env(self) -> dict[str, str]:
        s = self.settings
        env = {f"KEZEK_{name.upper()}": str(getattr(s, name)) for name in (
            "env", "country", "state_dir", "database_url", "kafka_bootstrap", "kafka_topic_prefix", "temporal_address",
            "temporal_namespace", "smtp_host", "smtp_port", *(f"{svc}_port" for svc in SERVICES))}
        return {**env, "KEZEK_SECRET_KEY": s.secret_key.get_secret_value(), "KEZEK_PUBLIC_URL": self.url,
                "KEZEK_RATE_LIMIT_PER_MINUTE": "100000", "KEZEK_LOG_LEVEL": "INFO",
                "KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT": "smtp", "KEZEK_NOTIFICATIONS_SMS_TRANSPORT": "console",
                "KEZEK_NOTIFICATIONS_CABINET_URL": f"{self.url}/cabinet", "KEZEK_NOTIFICATIONS_IDLE_SLEEP": "0.1",
                # The walks reload the cabinet the moment a clerk has acted,
                # before the act's event can reach the gateway: they read the
                # services (the read model's lag is tests/unit/test_cabinet_readmodel.py's).
                "KEZEK_CABINET_SNAPSHOT_SECONDS": "0"}

    def start(self) -> "Portal":
        self.smtp.start()
        register_namespace(self.settings.temporal_address, self.settings.temporal_namespace)
        ensure_topics(self.settings.kafka_bootstrap,
                      [self.settings.topic(a) for a in aggregates()] + [self.settings.topic(PUBLIC_TOPIC_SUFFIX)])
        sup = self.supervisor
        sup.env.update(self.child_env())
        sup.migrate()
        sup.start_processes()
        sup.wait_healthy(timeout=240)
        for kg in KINDERGARTENS:
            r = self.queue.put(f"/api/v1/kindergartens/{kg['id']}", json={k: v for k, v in kg.items() if k != "id"})
            assert r.status_code in (200, 201), r.text
        self.run_voucher_programme()
        return self

    def run_voucher_programme(self) -> None:
        """The city runs the voucher programme: an administrator gives the
        queue's policy a voucher category (ranked with the general queue)."""
        categories = self.queue.get("/api/v1/policy").json()["policy"]["categories"]
        if all(c["code"] != "voucher" for c in categories):
            categories.append({"code": "voucher", "rank": 100, "needs_confirmation": False})
            r = self.queue.put("/api/v1/policy", json={"changes": {"categories": categories},
                                                       "reason": "the city's voucher programme"})
            assert r.status_code == 200, r.text

    def stop(self) -> None:
        self.queue.close()
        self.supervisor.stop()
        self.smtp.stop()

    def log(self, name: str, tail: int = 40) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    # --- what an administrator and an auditor see, through the queue's API ---------

    def entry_of(self, child_pin: str, timeout: float = 60) -> dict:
        """The child's queue entry, once the queue has taken the application in."""
        found: dict = {}

        def joined() -> bool:
            r = self.queue.post("/api/v1/queue-entries/search", json={"pin": child_pin, "purpose": "other",
                                                                     "note": "browser test"})
            found.update(r.json() if r.status_code == 200 else {})
            return bool(found)

        wait_until(joined, timeout, f"queue entry of {child_pin}; consume-queue log:\n{self.log('consume-queue')}")
        return found

    def entry(self, application_id: str) -> dict:
        r = self.queue.get(f"/api/v1/queue-entries/{application_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def publish_place(self, kindergarten: str, cohort: int, language: str) -> None:
        r = self.queue.post(f"/api/v1/kindergartens/{kindergarten}/places",
                            json={"cohort": cohort, "language": language, "count": 1})
        assert r.status_code == 201, r.text

    def places(self, kindergarten: str) -> list[dict]:
        return self.queue.get(f"/api/v1/kindergartens/{kindergarten}/places").json()

    def raw_messages(self, aggregate: str) -> list[bytes]:
        """Every message on an internal topic so far, as any subscriber reads it."""
        from kafka import KafkaConsumer, TopicPartition

        topic = self.settings.topic(aggregate)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            out: list[bytes] = []
            deadline = time.monotonic() + 30
            while any(consumer.position(p) < ends[p] for p in parts) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    out += [r.value for r in records]
            return out
        finally:
            consumer.close()

    def wait_referral_workflow(self, application_id: str, timeout: float = 90) -> dict:
        """The referral the allocation issued, once its workflow has taken
        it up (the workflow records "referral.issued" through the queue's
        activity): from then on the parent's acts reach it."""
        def recorded() -> bool:
            trail = self.queue.get(f"/api/v1/queue-entries/{application_id}/audit").json()
            return any(e["action"] == "referral.issued" for e in trail)

        wait_until(recorded, timeout, f"referral workflow of {application_id}; worker log:\n{self.log('worker')}\n"
                                      f"consume-queue log:\n{self.log('consume-queue')}")
        return self.entry(application_id)["referral"]


class Commission:
    """A member of the district's voucher commission deciding through the
    verification service's own use case, on its database."""

    def __init__(self, portal: Portal, district: str):
        from services.verification import bootstrap

        self.service = bootstrap.build(portal.settings)
        login, password = f"commission-{uuid.uuid4().hex[:6]}", "commission member password 2026"
        self.service.staff.add(login, "Токтогулова Айжан", "commission", district, password)
        _, self.member = self.service.staff.login(login, password)

    def decide(self, application_id: str, decision: str, **details) -> int:
        wait_until(lambda: any(v["application_id"] == application_id
                               for v in self.service.vouchers.applications(self.member)),
                   60, f"voucher application {application_id} in the commission's list")
        return self.service.vouchers.decide(self.member, application_id, decision=decision, **details)

    def close(self) -> None:
        self.service.close()


def _running(p: Portal):
    try:
        p.start()
    except BaseException:
        p.stop()
        raise
    yield p
    p.stop()


@pytest.fixture(scope="module")
def portal(kafka_bootstrap, temporal_dev, tmp_path_factory):
    yield from _running(Portal(tmp_path_factory.mktemp("portal"), kafka_bootstrap, temporal_dev.address))


@pytest.fixture(scope="module")
def portal_on_postgres(kafka_bootstrap, temporal_dev, pg_cluster, tmp_path_factory):
    """The whole system on PostgreSQL, a database per service, as a
    deployment runs it: the same tables, locks and indexes as production."""
    database = pg_cluster.url(f"p{uuid.uuid4().hex[:8]}_{{service}}")
    yield from _running(Portal(tmp_path_factory.mktemp("portal"), kafka_bootstrap, temporal_dev.address,
                               database_url=database))


@pytest.fixture
def commission(portal):
    """The voucher commission of the district the families live in (Lenin
    district of Bishkek)."""
    c = Commission(portal, district="41711210000000")
    yield c
    c.close()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    # Debian's Chromium; Playwright never downloads a browser here.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(artifacts_dir) -> Path:
    path = artifacts_dir / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path
