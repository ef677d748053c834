"""Kezek scaled out on a three-broker Kafka cluster, and parts killed under
load: no event lost, no effect twice, the rules' invariants hold.

Three KRaft brokers on loopback (topics with replication factor 3 and
min.insync.replicas 2; producers acks=all), PostgreSQL, a Temporal dev
server, and Kezek as separate processes: two queue service replicas, two
relays, two consumer processes (so two instances of every consumer group)
and two workflow workers. While children join, places are published through
both replicas and parents cancel and kindergartens enrol through the
referral workflows, one broker, one relay, one consumer process and one
worker are killed with -9, and stay dead. Then, once the system has settled:
every outbox is drained; every event reached every consumer group that
subscribes to it; no child holds two live referrals; every pool's free,
held and enrolled places add up to what was published and match its
referrals; no place stays free while a child waits for it; every live
referral's workflow answers; no parent was told one thing twice."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from kezek import wiring
from kezek.commands import topics as topics_command
from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.health import heartbeat_path, read_heartbeat
from kezek.infra.kafka import KafkaCluster
from kezek.infra.postgres import open_temp_folder
from kezek.infra.procs import free_port, stop_processes
from kezek.infra.temporal import TemporalDevServer
from kezek.migrations import migration_services, upgrade
from kezek.settings import SERVICES, Settings
from services.queue.store.invariants import POOL_BOOKS
from tests.e2e.test_supervision import QueueAdmin, join_children, publish_place, wait
from workflows import contracts as c

pytestmark = pytest.mark.integration

KINDERGARTENS = ["kg-a", "kg-b"]
CHILDREN = 30
PUBLISHES = 16          # one place each, alternating kindergartens and queue replicas
COHORT = 2022
PARTITIONS = 4


@pytest.fixture
def folder():
    path = open_temp_folder("kezek-cluster-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Deployment:
    """The infrastructure and Kezek's processes, each started and killed by pid."""

    def __init__(self, folder: Path, pg_port: int):
        self.folder = folder
        (folder / "logs").mkdir()
        self.kafka = KafkaCluster(folder / "kafka", size=3, partitions=PARTITIONS, replication_factor=3,
                                  min_insync_replicas=2)
        self.temporal = TemporalDevServer(folder / "temporal")
        self.queue_ports = [free_port(), free_port()]
        self.procs: dict[str, subprocess.Popen] = {}
        prefix = f"c{uuid.uuid4().hex[:8]}"
        self.env = dict(
            os.environ, KEZEK_ENV="test", KEZEK_STATE_DIR=str(folder / "state"),
            KEZEK_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/{prefix}_{{service}}",
            KEZEK_KAFKA_TOPIC_PREFIX=prefix, KEZEK_KAFKA_PARTITIONS=str(PARTITIONS),
            KEZEK_KAFKA_REPLICATION_FACTOR="3", KEZEK_KAFKA_MIN_INSYNC_REPLICAS="2",
            KEZEK_QUEUE_PORT=str(self.queue_ports[0]), KEZEK_LOG_LEVEL="INFO",
            KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT="console", KEZEK_NOTIFICATIONS_SMS_TRANSPORT="console",
            **{f"KEZEK_{s.upper()}_PORT": str(free_port()) for s in SERVICES if s != "queue"})

    def start_infrastructure(self) -> None:
        self.kafka.start()
        self.temporal.start()
        self.env["KEZEK_KAFKA_BOOTSTRAP"] = self.kafka.bootstrap
        self.env["KEZEK_TEMPORAL_ADDRESS"] = self.temporal.address
        self.settings = Settings(
            _env_file=None, env="test", state_dir=self.env["KEZEK_STATE_DIR"],
            database_url=self.env["KEZEK_DATABASE_URL"], kafka_bootstrap=self.kafka.bootstrap,
            kafka_topic_prefix=self.env["KEZEK_KAFKA_TOPIC_PREFIX"], temporal_address=self.temporal.address,
            kafka_partitions=PARTITIONS, kafka_replication_factor=3, kafka_min_insync_replicas=2,
            queue_port=self.queue_ports[0])
        for service in migration_services():
            upgrade(service, self.settings.database_url_for(service))
        topics_command.create(self.settings)

    def spawn(self, name: str, *args: str) -> None:
        log = open(self.folder / "logs" / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "kezek.cli", *args], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start_kezek(self) -> None:
        for i, port in enumerate(self.queue_ports, 1):
            self.spawn(f"queue-{i}", "serve", "queue", "--port", str(port))
        for i in (1, 2):
            self.spawn(f"relay-{i}", "relay", "--name", f"relay-{i}")
            self.spawn(f"consume-{i}", "consume", "--name", f"consume-{i}")
            self.spawn(f"worker-{i}", "worker", "--name", f"worker-{i}")
        for name, proc in self.procs.items():
            if name.startswith("queue"):
                port = self.queue_ports[int(name[-1]) - 1]
                wait(lambda p=port, pr=proc: self.alive(pr) and httpx.get(
                    f"http://127.0.0.1:{p}/ready", timeout=3).status_code == 200, f"{name} ready", timeout=240)
            else:
                wait(lambda n=name, pr=proc: self.alive(pr) and self.beating(n, pr.pid), f"{name} well",
                     timeout=240)

    def alive(self, proc: subprocess.Popen) -> bool:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        return True

    def beating(self, name: str, pid: int) -> bool:
        beat = read_heartbeat(heartbeat_path(self.folder / "state", name))
        return bool(beat) and beat["pid"] == pid and beat["status"] == "ok"

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def replication(self) -> dict[str, tuple[int, int, str]]:
        """Each topic's partitions, copies and min.insync.replicas."""
        from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

        topics = topics_command.all_topics(self.settings)
        admin = KafkaAdminClient(bootstrap_servers=self.kafka.bootstrap)
        try:
            described = {t["name"]: t["partitions"] for t in admin.describe_topics(topics)}
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])["topic"]
        finally:
            admin.close()
        return {t: (len(described[t]), len(described[t][0]["replica_nodes"]),
                    configs[t]["min.insync.replicas"]["value"]) for t in topics}

    def db(self, service: str) -> sa.Engine:
        return make_engine(self.settings.database_url_for(service))

    def tell_logs(self, lines: int = 30) -> None:
        """Each process's last warnings and errors of its own (kafka-python's
        connection noise left out), for a failure to explain itself where
        the folder is gone afterwards (CI)."""
        for log in sorted((self.folder / "logs").glob("*.log")):
            own = [line for line in log.read_text(errors="replace").splitlines()
                   if '"level": "warning"' in line or '"level": "error"' in line][-lines:]
            print(f"--- {log.name} (its last {len(own)} warnings and errors)", *own, sep="\n")

    def stop(self) -> None:
        stop_processes(self.procs.values(), timeout=15)
        self.temporal.stop()
        self.kafka.stop(hard=True)


# ------------------------------------------------------------ what parents do

def register_parents(d: Deployment, applications: list[str]) -> None:
    """What registration publishes for each application: its parent's
    contacts, so that notifications has someone to tell."""
    from services.registration.models import outbox as registration_outbox

    engine = d.db("registration")
    with unit_of_work(make_session_factory(engine)) as s:
        for n, app in enumerate(applications):
            registration_outbox.add(s, "application.received.v1", app, {
                "application_id": app, "parent_id": f"parent-{app}", "locale": "ky", "child_name": "Айбек",
                "email": f"parent{n}@example.kg", "phone": f"+996555{n:06d}"})
    engine.dispose()


def live_referrals(d: Deployment) -> list[int]:
    with d.db("queue").connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM referrals WHERE status = 'live' ORDER BY id")).scalars())


def act(d: Deployment, referral_id: int, update: str, request: c.Act) -> None:
    """A parent's cancel or a kindergarten's enrolment, through the referral's
    workflow; asked again (same update id: one act) while a worker is gone."""
    from temporalio.client import WorkflowUpdateFailedError

    from workflows.worker import connect

    async def run() -> None:
        client = await connect(d.temporal.address)
        handle = client.get_workflow_handle(c.workflow_id(str(referral_id)))
        for _ in range(30):
            try:
                await asyncio.wait_for(handle.execute_update(update, request, id=f"{update}-{referral_id}",
                                                             result_type=c.ActResult), 30)
                return
            except WorkflowUpdateFailedError:
                raise
            except Exception:
                await asyncio.sleep(2)
        raise AssertionError(f"{update} of referral {referral_id} never went through")

    asyncio.run(run())


# ------------------------------------------------------------------ invariants

def rows(d: Deployment, service: str, query: str) -> list:
    engine = d.db(service)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query)))
    finally:
        engine.dispose()


def unsent(d: Deployment) -> int:
    total = sum(rows(d, s, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0] for s in SERVICES)
    return total + rows(d, "gateway", "SELECT count(*) FROM public_outbox WHERE sent_at IS NULL")[0][0]


def events_not_consumed(d: Deployment) -> dict[str, int]:
    """Per consumer group: the events of its topics and types that it has
    not recorded as processed."""
    events = [(event_id, type_) for s in SERVICES for event_id, type_ in rows(d, s, "SELECT event_id, type FROM outbox")]
    processed: dict[str, set[str]] = {}
    for s in SERVICES:
        for consumer, event_id in rows(d, s, "SELECT consumer, event_id FROM processed_events"):
            processed.setdefault(consumer, set()).add(event_id)
    missing = {}
    for group, topics, types in d.groups:
        aggregates = {t.rsplit(".", 1)[1] for t in topics}
        expected = {i for i, t in events if t.split(".", 1)[0] in aggregates and (types is None or t in types)}
        missing[group] = len(expected - processed.get(group, set()))
    return missing


def consumer_groups(settings: Settings) -> list[tuple[str, list[str], set[str] | None]]:
    """Every consumer group the consumer processes run, with its topics and types."""
    found = []
    for consumer in wiring.consumers(settings):
        found.append((consumer.name, consumer.topics, consumer.types))
        consumer.close()
    return found


def test_kezek_on_a_three_broker_cluster_loses_nothing_and_does_nothing_twice_when_parts_die(folder, pg_cluster):
    d = Deployment(folder, pg_cluster.port)
    started = time.monotonic()
    figures: dict[str, float] = {}
    try:
        d.start_infrastructure()
        figures["infrastructure_s"] = round(time.monotonic() - started, 1)
        d.groups = consumer_groups(d.settings)
        d.start_kezek()
        figures["kezek_up_s"] = round(time.monotonic() - started, 1)
        replicas = [QueueAdmin(f"http://127.0.0.1:{p}") for p in d.queue_ports]
        applications = join_children(replicas[0], KINDERGARTENS, CHILDREN, prefix="cl", cohort=COHORT)
        register_parents(d, applications)

        # The stream, and the kills in the middle of it.
        kills = {3: lambda: d.kafka.brokers[1].stop(hard=True), 6: lambda: d.kill("relay-1"),
                 9: lambda: d.kill("consume-1"), 12: lambda: d.kill("worker-1")}
        cancelled = enrolled = 0
        for n in range(PUBLISHES):
            publish_place(replicas[n % 2], KINDERGARTENS[n % 2], COHORT)
            if n in kills:
                kills[n]()
            if n % 4 == 3:   # a parent declines a referral, a kindergarten enrols another
                wait(lambda: live_referrals(d), "a live referral", timeout=120)
                live = live_referrals(d)
                act(d, live[0], c.CANCEL, c.CancelReferral(actor=f"parent:{live[0]}", reason="moved away"))
                cancelled += 1
                if len(live) > 1:
                    act(d, live[-1], c.ENROL, c.RecordEnrolment(actor="kindergarten:kg"))
                    enrolled += 1
        figures["stream_s"] = round(time.monotonic() - started, 1)

        # Settled: every outbox drained, every event consumed by its groups,
        # every place taken (30 children wait for 16 places).
        left: dict[str, object] = {}

        def settled() -> bool:
            left.update(unsent=unsent(d), free=rows(d, "queue", "SELECT sum(free) FROM places")[0][0],
                        not_consumed={g: n for g, n in events_not_consumed(d).items() if n})
            return left["unsent"] == 0 and not left["not_consumed"] and left["free"] == 0
        try:
            wait(settled, "the system settled", timeout=300)
        except AssertionError:
            d.tell_logs()
            raise AssertionError(f"the system did not settle within 300 s; still left: {left}") from None
        figures["settled_s"] = round(time.monotonic() - started, 1)

        # No child with two live referrals.
        assert not rows(d, "queue", "SELECT application_id FROM referrals WHERE status = 'live' "
                                    "GROUP BY application_id HAVING count(*) > 1")
        # Pools balanced: what was published is free, held or taken, and held
        # and taken places are the live and enrolled referrals.
        pools = rows(d, "queue", POOL_BOOKS)
        assert sum(p.published for p in pools) == PUBLISHES
        for p in pools:
            assert p.free + p.held + p.enrolled == p.published, p
            assert (p.held, p.enrolled) == (p.live, p.taken), p
        referrals = rows(d, "queue", "SELECT id, status, workflow_started_at FROM referrals")
        assert sum(r.status == "enrolled" for r in referrals) == enrolled
        assert sum(r.status == "ended" for r in referrals) == cancelled
        assert all(r.workflow_started_at for r in referrals)
        # Every live referral's workflow answers (the surviving worker runs it).
        for r in referrals:
            if r.status == "live":
                assert asyncio.run(_query(d, r.id)) == "awaiting_enrolment"
        # No parent told one thing twice.
        assert not rows(d, "notifications", "SELECT referral_id, kind, channel FROM messages "
                                            "GROUP BY referral_id, application_id, kind, channel "
                                            "HAVING count(*) > 1")
        told = rows(d, "notifications", "SELECT count(*) FROM messages WHERE kind = 'referral_issued'")[0][0]
        assert told >= len(referrals), "every referral issued was told (e-mail, SMS or both)"
        # The topics are replicated as the settings say.
        assert d.replication() == {t: (PARTITIONS, 3, "2") for t in topics_command.all_topics(d.settings)}
    finally:
        d.stop()
        print("cluster figures:", figures)


async def _query(d: Deployment, referral_id: int) -> str:
    from workflows.worker import connect

    client = await connect(d.temporal.address)
    status = await client.get_workflow_handle(c.workflow_id(str(referral_id))).query(c.STATUS,
                                                                                    result_type=c.ReferralStatus)
    return status.state.value
