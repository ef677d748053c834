"""The parents' portal running for real, for headless Chromium: the gateway
and registration services on their own ports, registration's outbox relayed
to a real Kafka broker, the notifications service (its own process)
consuming it and mailing codes and activation links to a real SMTP server
(aiosmtpd) that the tests read. The queue side is the gateway's stand-in
(services/gateway/testing.py), fed from registration's events."""
from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from email.policy import default as default_policy
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller

from kezek.db import make_session_factory
from kezek.infra.kafka import ensure_topics
from kezek.infra.procs import free_port, wait_until
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay
from services.gateway.api import GatewaySettings, create_app as gateway_app
from services.gateway.testing import FakeInbox, FakeQueue
from services.registration.api import RegistrationSettings, create_app as registration_app
from services.registration.models import outbox as registration_outbox

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


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


class ServerThread:
    def __init__(self, app, port: int):
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"uvicorn-{port}")

    def start(self) -> "ServerThread":
        self.thread.start()
        wait_until(lambda: self.server.started, 30, f"server on {self.port}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class Portal:
    def __init__(self, workdir: Path, bootstrap: str):
        self.workdir = workdir
        self.prefix = f"b{uuid.uuid4().hex[:8]}"
        self.gateway_port, self.registration_port, self.queue_port, self.notifications_port, self.smtp_port = (
            free_port() for _ in range(5))
        self.url = f"http://localhost:{self.gateway_port}"
        self.mailbox = Mailbox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=self.smtp_port)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.servers: list[ServerThread] = []
        self.bootstrap = bootstrap
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Portal":
        self.smtp.start()
        common = dict(state_dir=self.workdir, env="test", kafka_bootstrap=self.bootstrap,
                      kafka_topic_prefix=self.prefix)
        reg_settings = RegistrationSettings(**common, public_url=self.url)
        upgrade("registration", reg_settings.database_url_for("registration"))
        upgrade("gateway", reg_settings.database_url_for("gateway"))
        self.registration = registration_app(reg_settings)
        self.queue = FakeQueue()
        gw_settings = GatewaySettings(
            **common, public_url=self.url, rate_limit_per_minute=10_000,
            registration_url=f"http://127.0.0.1:{self.registration_port}",
            queue_url=f"http://127.0.0.1:{self.queue_port}",
            notifications_url=f"http://127.0.0.1:{self.notifications_port}")
        # The referral workflows' updates and query: the stand-in (no Temporal here).
        self.gateway = gateway_app(gw_settings, referrals=self.queue.workflows)
        ensure_topics(self.bootstrap, [f"{self.prefix}.{a}" for a in ("registration", "account", "application")])
        self._start_notifications()
        self.servers = [ServerThread(self.registration, self.registration_port).start(),
                        ServerThread(self.queue.app, self.queue_port).start(),
                        ServerThread(self.gateway, self.gateway_port).start()]
        relay = OutboxRelay(make_session_factory(self.registration.state.engine), registration_outbox,
                            self.bootstrap, topic_prefix=self.prefix)
        self._loop(relay.run, "relay")
        self._loop(self._feed_queue, "queue-feed")
        return self

    def _loop(self, target, name: str) -> None:
        t = threading.Thread(target=target, args=(self.stop_event,), daemon=True, name=name)
        t.start()
        self.threads.append(t)

    def _feed_queue(self, stop: threading.Event) -> None:
        # Stands in for the queue service's consumer of application.submitted.v1.
        while not stop.wait(0.3):
            self.queue.feed_from_outbox(self.registration.state.engine)

    def _start_notifications(self) -> None:
        env = {**os.environ, "KEZEK_ENV": "test", "KEZEK_STATE_DIR": str(self.workdir),
               "KEZEK_KAFKA_BOOTSTRAP": self.bootstrap, "KEZEK_KAFKA_TOPIC_PREFIX": self.prefix,
               "KEZEK_SMTP_HOST": "127.0.0.1", "KEZEK_SMTP_PORT": str(self.smtp_port),
               "KEZEK_NOTIFICATIONS_PORT": str(self.notifications_port),
               "KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT": "smtp", "KEZEK_NOTIFICATIONS_SMS_TRANSPORT": "console",
               "KEZEK_NOTIFICATIONS_CABINET_URL": f"{self.url}/cabinet",
               "KEZEK_NOTIFICATIONS_IDLE_SLEEP": "0.1", "KEZEK_GATEWAY_PORT": str(self.gateway_port)}
        log = open(self.workdir / "notifications.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.notifications", "--migrate"], cwd=ROOT,
                                     env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{self.notifications_port}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, "notifications service", self.proc)

    def application_of(self, child_pin: str) -> str:
        import json

        import sqlalchemy as sa

        with self.registration.state.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT payload FROM outbox WHERE type = 'application.submitted.v1'")).all()
        ids = [json.loads(p)["data"]["application_id"] for (p,) in rows
               if json.loads(p)["data"]["child_pin"] == child_pin]
        assert ids, f"no application for {child_pin}"
        return ids[-1]

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        for s in self.servers:
            s.stop()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.smtp.stop()


@pytest.fixture(scope="session")
def portal(kafka_bootstrap, tmp_path_factory):
    p = Portal(tmp_path_factory.mktemp("portal"), kafka_bootstrap).start()
    yield p
    p.stop()


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
