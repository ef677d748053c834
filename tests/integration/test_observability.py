"""What an operator watches: one trace from a parent's request through the
referral workflow's activity, the outbox and Kafka to a consumer's effect;
the backbone's metrics on a background process's metrics port; and
`kezek status` naming each part's health and each lag."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy.orm import DeclarativeBase
from temporalio import activity

from kezek import metrics
from kezek.consumer import IdempotentConsumer
from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.health import heartbeat_path, write_heartbeat
from kezek.infra.kafka import ensure_topics
from kezek.infra.procs import free_port
from kezek.outbox import Outbox
from kezek.relay import OutboxRelay, wait_until_relayed
from workflows import contracts as c

pytestmark = pytest.mark.integration

EXPORTED = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, recording every span in memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTED))
    EXPORTED.clear()
    return EXPORTED


class Base(DeclarativeBase):
    pass


class Told(Base):
    """The consumer's effect in this test: the parent told of the cancellation."""
    __tablename__ = "told"
    event_id = sa.Column(sa.String(36), primary_key=True)
    referral_id = sa.Column(sa.String(100))


queue_outbox = Outbox(Base.metadata, source="queue")


def activities(sessions) -> list:
    """The queue's and notifications' activities as the workflow sees them;
    returning the place writes its fact into the queue's outbox, in the
    activity's transaction, as the queue does."""

    @activity.defn(name=c.RETURN_PLACE)
    async def return_place(p: c.ReturnPlace) -> None:
        with unit_of_work(sessions) as s:
            queue_outbox.add(s, "referral.cancelled.v1", f"referral:{p.referral_id}",
                             {"referral_id": p.referral_id, "application_id": p.application_id})

    noops = []
    for name in (c.RETURN_TO_GENERAL_QUEUE, c.PUT_ON_STOPLIST, c.LIFT_STOPLIST, c.RECORD_ENROLMENT,
                 c.RECORD_REFERRAL, c.NOTIFY_PARENT):
        @activity.defn(name=name)
        async def noop(p) -> None:
            return None
        noops.append(noop)
    return [return_place, *noops]


class Worker(threading.Thread):
    """The referral workflow's worker, on its own event loop, with the
    clients' tracing interceptor (kezek.connections)."""

    def __init__(self, address: str, task_queue: str, acts: list, first: c.ReferralInput):
        super().__init__(daemon=True)
        self.address, self.task_queue, self.acts, self.first = address, task_queue, acts, first
        self.ready, self.done = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from workflows.client import issue
        from workflows.worker import build_worker, connect

        async def main() -> None:
            client = await connect(self.address)
            async with build_worker(client, self.acts, task_queue=self.task_queue):
                await issue(client, self.first, task_queue=self.task_queue)
                self.ready.set()
                while not self.done.is_set():
                    await asyncio.sleep(0.1)

        try:
            asyncio.run(main())
        except BaseException as exc:   # surfaced by the test
            self.error = exc
            self.ready.set()


def test_one_trace_runs_from_a_parents_cancel_through_the_workflows_activity_and_kafka_to_the_consumers_effect(
        spans, tmp_path, kafka_bootstrap, temporal_dev):
    from fastapi.testclient import TestClient

    from services.gateway.api import create_app as gateway_app
    from services.gateway.referrals import TemporalReferrals
    from tests.fakes.gateway import Stack
    from tests.builders import CHILD, MOTHER as PARENT
    from tests.unit.test_gateway_api import register

    # The gateway and registration for real; the queue's HTTP answers from
    # the stand-in; the parent's act through Temporal for real.
    stack = Stack(tmp_path, rate_limit_per_minute=100_000)
    stack.gateway = gateway_app(stack.settings, transports={
        "registration": httpx.ASGITransport(app=stack.registration),
        "queue": httpx.ASGITransport(app=stack.queue.app),
        "notifications": httpx.ASGITransport(app=stack.inbox.app),
    }, referrals=TemporalReferrals(temporal_dev.address))
    engine = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    prefix = f"obs{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [f"{prefix}.referral"])

    with TestClient(stack.gateway, base_url="https://testserver") as api:
        token, app_id = register(api, stack, child={**CHILD, "pin": "21506202400391"},
                                 parent={**PARENT, "email": f"{prefix}@example.kg"})
        held = stack.queue.publish_place(app_id)
        # A referral id of this test's own (the Temporal server is shared).
        rid = str(uuid.uuid4().int % 10 ** 12)
        stack.queue.referrals[rid] = {**stack.queue.referrals.pop(held["referral_id"]), "id": int(rid)}
        ref = stack.queue.referrals[rid]
        worker = Worker(temporal_dev.address, f"obs-{prefix}", activities(sessions), c.ReferralInput(
            referral_id=rid, application_id=app_id, kindergarten=ref["kindergarten"], cohort=ref["cohort"],
            language=ref["language"], category="general", needs_confirmation=False,
            issued_at=datetime.fromisoformat(ref["issued_at"])))
        worker.start()
        assert worker.ready.wait(60) and worker.error is None, worker.error
        try:
            spans.clear()
            r = api.post(f"/api/v1/me/referrals/{rid}/cancel", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        finally:
            worker.done.set()
            worker.join(30)

    # The activity's fact goes out through the relay and comes in to a consumer.
    wait_until_relayed(OutboxRelay(sessions, queue_outbox, kafka_bootstrap, topic_prefix=prefix))

    def tell(session, event) -> None:
        session.add(Told(event_id=event.id, referral_id=event.data["referral_id"]))

    consumer = IdempotentConsumer(name=f"{prefix}-notifications", topics=[f"{prefix}.referral"],
                                  bootstrap=kafka_bootstrap, sessions=sessions, outbox=queue_outbox, handle=tell)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not consumer.poll_once(timeout_ms=1000):
            pass
    finally:
        consumer.close()
    with sessions() as s:
        assert [t.referral_id for t in s.scalars(sa.select(Told))] == [rid]

    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.kind == SpanKind.SERVER
                   and (s.attributes or {}).get("url.path") == f"/api/v1/me/referrals/{rid}/cancel")
    in_trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    by_name = {s.name: s for s in in_trace}
    # The gateway asked the queue for the child's referral, within the request's trace.
    assert any(s.kind == SpanKind.CLIENT and (s.attributes or {}).get("peer.service") == "queue" for s in in_trace)
    assert f"StartWorkflowUpdate:{c.CANCEL}" in by_name                  # the gateway's Temporal client
    assert f"HandleUpdate:{c.CANCEL}" in by_name                         # the worker, in the request's trace
    activity_span = by_name[f"RunActivity:{c.RETURN_PLACE}"]              # the activity the update called
    send = next(s for s in in_trace if s.kind == SpanKind.PRODUCER)      # the relay, once Kafka had it
    effect = next(s for s in in_trace if s.kind == SpanKind.CONSUMER)    # the consumer's effect
    assert send.parent.span_id == effect.parent.span_id == activity_span.context.span_id
    assert effect.name == f"{prefix}-notifications process referral.cancelled.v1"
    # The trace travelled in the envelope, as a CloudEvents extension attribute.
    with sessions() as s:
        payload = json.loads(s.scalar(sa.select(queue_outbox.table.c.payload)))
    assert payload["traceparent"].split("-")[1] == f"{request.context.trace_id:032x}"


def test_a_relay_exports_its_outbox_backlog_and_throughput_and_a_consumer_its_lag_on_the_metrics_port(
        tmp_path, kafka_bootstrap):
    prefix = f"met{uuid.uuid4().hex[:8]}"
    tables = sa.MetaData()
    outbox = Outbox(tables, source=prefix)              # a source of this test's own, for its labels
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    tables.create_all(engine)
    sessions = make_session_factory(engine)
    ensure_topics(kafka_bootstrap, [f"{prefix}.referral"])
    with unit_of_work(sessions) as s:
        for n in range(3):
            outbox.add(s, "referral.cancelled.v1", "referral:one", {"referral_id": f"r{n}", "application_id": "a"})
    relay = OutboxRelay(sessions, outbox, kafka_bootstrap, topic_prefix=prefix)
    relay.measure()
    value = REGISTRY.get_sample_value
    assert value("kezek_outbox_unsent", {"source": prefix}) == 3
    assert value("kezek_outbox_oldest_unsent_seconds", {"source": prefix}) >= 0
    wait_until_relayed(relay)
    relay.measure()
    assert value("kezek_outbox_unsent", {"source": prefix}) == 0
    assert value("kezek_events_relayed_total", {"source": prefix}) == 3

    group = f"{prefix}-group"
    consumer = IdempotentConsumer(name=group, topics=[f"{prefix}.referral"], bootstrap=kafka_bootstrap,
                                  sessions=sessions, outbox=outbox, handle=lambda s, e: None, max_poll_records=1)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not consumer.poll_once(timeout_ms=1000):
            pass
        consumer.measure_lag()
        assert value("kezek_consumer_lag", {"consumer": group, "topic": f"{prefix}.referral"}) == 2
    finally:
        consumer.close()

    port = metrics.serve(free_port())
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert f'kezek_outbox_unsent{{source="{prefix}"}} 0.0' in text
    assert f'kezek_consumer_lag{{consumer="{group}",topic="{prefix}.referral"}} 2.0' in text


def test_kezek_status_names_each_parts_health_each_outbox_backlog_and_each_consumer_groups_lag(
        tmp_path, kafka_bootstrap, monkeypatch, capsys):
    from kezek.commands import status
    from kezek.migrations import upgrade
    from kezek.settings import SERVICES, Settings
    from services.queue.models import outbox as the_queues_outbox

    prefix = f"st{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KEZEK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("KEZEK_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("KEZEK_KAFKA_TOPIC_PREFIX", prefix)
    for service in SERVICES:     # nothing answers there
        monkeypatch.setenv(f"KEZEK_{service.upper()}_PORT", str(free_port()))
    settings = Settings(_env_file=None)
    for service in SERVICES:
        upgrade(service, settings.database_url_for(service))
    with unit_of_work(make_session_factory(make_engine(settings.database_url_for("queue")))) as s:
        for n in range(2):
            the_queues_outbox.add(s, "referral.cancelled.v1", f"referral:{n}",
                                  {"referral_id": str(n), "application_id": "a"})
    write_heartbeat(heartbeat_path(tmp_path, "relay"), loops={"relay-queue": True}, checks={"kafka": "ok"})
    stale = write_heartbeat(heartbeat_path(tmp_path, "consume-queue"), loops={"queue.applications": True},
                            checks={"kafka": "ok"})
    heartbeat_path(tmp_path, "consume-queue").write_text(json.dumps({**stale, "time": time.time() - 120}))
    # A consumer group that handled one of three events.
    topic = f"{prefix}.application"
    ensure_topics(kafka_bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(3):
        producer.send(topic, key=b"one", value=json.dumps({"n": n}).encode())
    producer.flush()
    producer.close()
    reader = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"{prefix}-readers",
                           enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (got := reader.poll(timeout_ms=1000)):
        pass
    reader.commit()
    reader.close()

    rc = status.main(["--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["well"] is False
    assert report["parts"]["relay"]["well"] and report["parts"]["relay"]["status"] == "ok"
    assert report["parts"]["consume-queue"] == {**report["parts"]["consume-queue"], "well": False,
                                                "status": "stale"}
    assert report["parts"]["gateway"] == {"kind": "service", "well": False, "status": "no answer",
                                          "detail": "ConnectError"}
    assert report["lags"]["outboxes"]["queue"]["unsent"] == 2
    assert report["lags"]["outboxes"]["public"] == {"unsent": 0, "oldest_seconds": 0.0}
    assert report["lags"]["consumer_groups"][f"{prefix}-readers"]["lag"] == 2
    assert got
