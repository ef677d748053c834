"""The caseworkers' side running for real, for headless Chromium: the
verification service under uvicorn, the REAL ReferralWorkflow on the
`temporal_dev` server with a worker whose queue and notification activities
are a stand-in for the queue service. The stand-in keeps each referral as
the parent's cabinet shows it and publishes the referral facts into the
verification read model, as the queue's outbox, Kafka and the consumer do.

Import the fixtures into a test module:
    from caseworker_support import caseworker_page, caseworker_site  # noqa: F401
"""
from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from argon2 import PasswordHasher
from temporalio import activity
from temporalio.client import Client, WorkflowHandle

from kezek import calendar as kcal
from kezek.db import make_engine, make_session_factory
from kezek.infra.procs import free_port, wait_until
from kezek.migrations import upgrade
from services.verification.api import create_app
from services.verification.bootstrap import build_ingest
from services.verification.settings import VerificationSettings
from tests.fakes.activities import stand_in
from tests.fakes.verification import (
    DISTRICT_A, DISTRICT_B, PASSWORD, application_received, application_submitted, deliver, referral_fact,
)
from workflows import contracts as c
from workflows.worker import build_worker, connect

STAFF = (("aida", "Аида Асанова", "caseworker", DISTRICT_A), ("bakyt", "Бакыт Бекмуратов", "caseworker", DISTRICT_B),
         ("chynara", "Чынара Токтосунова", "supervisor", DISTRICT_A),
         ("emil", "Эмиль Жумабеков", "commission", DISTRICT_A), ("farida", "Фарида Исакова", "commission", DISTRICT_A))


class LoopThread:
    """An asyncio loop of its own, for the Temporal client and worker, driven
    from synchronous tests (Playwright's sync API runs in the main thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="caseworker-temporal", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class ParentReferral:
    """A referral as the parent's cabinet shows it (the queue's record)."""

    state: str
    deadline: datetime | None
    events: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass
class QueueStandIn:
    """The queue and notifications activities of workflows/contracts.py."""

    site: "CaseworkerSite"
    referrals: dict[str, ParentReferral] = field(default_factory=dict)
    general_queue: dict[str, str] = field(default_factory=dict)   # application -> category it lost
    places_returned: list[tuple[str, str]] = field(default_factory=list)
    publish_cancellations: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def activities(self) -> list:
        q = self

        @activity.defn(name=c.RECORD_REFERRAL)
        async def record_referral(p: c.RecordReferral) -> None:
            kind = p.event.removeprefix("referral.")
            with q.lock:
                ref = q.referrals.setdefault(p.referral_id, ParentReferral(p.state.value, p.deadline))
                if p.idempotency_key in ref.events:
                    return
                ref.state, ref.deadline, ref.reason = p.state.value, p.deadline, p.reason
                ref.events.append(p.idempotency_key)
            extra: dict[str, Any] = {"deadline": p.deadline.isoformat() if p.deadline else None}
            if kind == "issued":
                extra.update(kindergarten_id=p.place.kindergarten, kindergarten_name="Бала бакча № 12 «Күн»",
                             needs_confirmation=p.needs_confirmation, category="extraordinary",
                             cohort=p.place.cohort, language=p.place.language)
            if p.reason and kind != "issued":
                extra["reason"] = p.reason[:500]
            q.site.publish(referral_fact(kind, p.referral_id, p.application_id, at=p.at, **extra))

        @activity.defn(name=c.RETURN_PLACE)
        async def return_place(p: c.ReturnPlace) -> None:
            with q.lock:
                q.places_returned.append((p.referral_id, p.outcome))
                ref = q.referrals.get(p.referral_id)
                if ref is not None:
                    ref.state, ref.deadline, ref.reason = p.outcome, None, p.reason
            if p.outcome != "cancelled" or q.publish_cancellations:
                q.site.publish(referral_fact(p.outcome, p.referral_id, p.application_id, at=p.at,
                                             reason=p.reason))

        @activity.defn(name=c.RETURN_TO_GENERAL_QUEUE)
        async def return_to_general_queue(p: c.ReturnToGeneralQueue) -> None:
            with q.lock:
                q.general_queue[p.application_id] = p.from_category

        return [record_referral, return_place, return_to_general_queue,
                *map(stand_in, (c.PUT_ON_STOPLIST, c.LIFT_STOPLIST, c.RECORD_ENROLMENT, c.NOTIFY_PARENT))]


class CaseworkerSite:
    def __init__(self, state_dir: Path, temporal_address: str):
        self.state_dir = state_dir
        self.temporal_address = temporal_address
        self.task_queue = f"caseworker-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = VerificationSettings(state_dir=state_dir, env="test", temporal_address=temporal_address)
        self.db_url = self.settings.database_url_for("verification")
        self.cal = kcal.calendar("KG")
        self.queue = QueueStandIn(self)
        self.loop = LoopThread()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "CaseworkerSite":
        upgrade("verification", self.db_url)
        self.engine = make_engine(self.db_url)
        self.sessions = make_session_factory(self.engine)
        self.ingest = build_ingest()
        app = create_app(self.settings, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        for login, name, role, district in STAFF:
            app.state.service.staff.add(login, name, role, district, PASSWORD)
        self.client: Client = self.loop.run(connect(self.temporal_address))
        self.worker = build_worker(self.client, self.queue.activities(), task_queue=self.task_queue)
        self.worker_task = asyncio.run_coroutine_threadsafe(self.worker.run(), self.loop.loop)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, timeout_graceful_shutdown=2))
        self.server_thread = threading.Thread(target=self.server.run, name="verification-http", daemon=True)
        self.server_thread.start()
        wait_until(lambda: self.server.started, 30, "verification service")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server_thread.join(15)
        try:
            self.loop.run(self.worker.shutdown(), timeout=30)
        finally:
            self.loop.stop()
            self.engine.dispose()

    # ---------------------------------------------------------------- the world

    def publish(self, event) -> None:
        """What the queue's outbox, the relay and this service's consumer do."""
        deliver(self.sessions, self.ingest, event)

    def today(self) -> date:
        return self.cal.local_date(datetime.now(UTC))

    @staticmethod
    def new_pin() -> str:
        suffix = uuid.uuid4().hex
        return f"1{10 + int(suffix[:2], 16) % 18:02d}0320230{int(suffix[2:6], 16) % 10000:04d}"

    def issue_privileged_referral(self, *, district: str = DISTRICT_A, surname: str = "Асанова",
                                  name: str = "Айгерим", pin: str | None = None,
                                  application_id: str | None = None) -> tuple[str, str]:
        """A child with an extraordinary right gets a referral: its workflow
        starts, and the referral reaches the caseworkers' worklist."""
        suffix = uuid.uuid4().hex[:8]
        referral_id = f"ref-{suffix}"
        if application_id is None:
            application_id = f"app-{suffix}"
            self.publish(application_submitted(application_id, pin=pin or self.new_pin(), district=district,
                                               surname=surname, name=name))
            self.publish(application_received(application_id))
        inp = c.ReferralInput(referral_id=referral_id, application_id=application_id, kindergarten="kg-sun",
                              cohort=2023, language="ru", category="extraordinary", needs_confirmation=True,
                              issued_at=datetime.now(UTC), country="KG", parent_id="parent-1")
        self.loop.run(self.client.start_workflow(c.WORKFLOW_TYPE, inp, id=c.workflow_id(referral_id),
                                                 task_queue=self.task_queue))
        wait_until(lambda: referral_id in self.queue.referrals and self._in_read_model(referral_id), 30,
                   "referral in the worklist")
        return referral_id, application_id

    def _in_read_model(self, referral_id: str) -> bool:
        import sqlalchemy as sa

        from services.verification.models import Referral

        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(Referral)
                            .where(Referral.referral_id == referral_id)) == 1

    def handle(self, referral_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(c.workflow_id(referral_id))

    def status(self, referral_id: str) -> c.ReferralStatus:
        return self.loop.run(self.handle(referral_id).query(c.STATUS, result_type=c.ReferralStatus))

    def parent_cancels(self, referral_id: str) -> c.ActResult:
        return self.loop.run(self.handle(referral_id).execute_update(
            c.CANCEL, c.CancelReferral(actor="parent:parent-1"), result_type=c.ActResult))

    def wait_parent_state(self, referral_id: str, state: str, timeout: float = 30) -> ParentReferral:
        wait_until(lambda: self.queue.referrals.get(referral_id) and
                   self.queue.referrals[referral_id].state == state, timeout, f"parent's referral {state}")
        return self.queue.referrals[referral_id]


@pytest.fixture(scope="module")
def caseworker_site(temporal_dev, tmp_path_factory):
    site = CaseworkerSite(tmp_path_factory.mktemp("caseworker"), temporal_dev.address).start()
    yield site
    site.stop()


@pytest.fixture
def caseworker_page(chromium, caseworker_site):
    """A fresh page of a staff member's desktop browser (in Russian)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="ru-RU")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def pdf_scan(directory: Path) -> Path:
    path = directory / "spravka.pdf"
    path.write_bytes(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
    return path


@pytest.fixture(scope="module")
def caseworker_screenshots(artifacts_dir) -> Path:
    path = artifacts_dir / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path
