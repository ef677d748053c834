"""`kezek run` supervises like an init system: each kind of part killed
with -9 (an HTTP service, the relay, a consumer process, the worker, Kafka,
Temporal, PostgreSQL) is started again and the system serves again with
nothing lost; `kezek stop` then stops everything, restarted parts included,
and leaves nothing running."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from kezek.client import SyncServiceClient, UpstreamError
from kezek.demo import ADMIN
from kezek.health import kafka_check, read_heartbeat, heartbeat_path, temporal_check
from kezek.infra.postgres import open_temp_folder
from kezek.infra.procs import free_port, port_open
from kezek.settings import Settings
from kezek.trust import ServiceKeys

pytestmark = pytest.mark.integration

KG = "sup-kg"
CHILDREN = 9
COHORT = 2022


def wait(condition, what: str, timeout: float = 180, fail_fast: type[Exception] | None = None) -> float:
    """Polls until `condition()` is true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except Exception as exc:
            if fail_fast is not None and isinstance(exc, fail_fast):
                raise
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


class System:
    def __init__(self, tmp: Path):
        self.state = tmp / "state"
        self.ports = {s: free_port() for s in ("gateway", "registration", "queue", "verification", "notifications")}
        self.temporal, self.kafka, self.pg = f"127.0.0.1:{free_port(span=2)}", f"127.0.0.1:{free_port(span=2)}", free_port()
        self.env = dict(os.environ, KEZEK_STATE_DIR=str(self.state), KEZEK_TEMPORAL_ADDRESS=self.temporal,
                        KEZEK_TEMPORAL_UI_PORT=str(free_port()), KEZEK_KAFKA_BOOTSTRAP=self.kafka,
                        KEZEK_POSTGRES_PORT=str(self.pg), KEZEK_LOG_LEVEL="WARNING", KEZEK_KAFKA_PARTITIONS="3",
                        KEZEK_RUN_POSTGRES_SETTINGS="work_mem=12MB",
                        **{f"KEZEK_{s.upper()}_PORT": str(p) for s, p in self.ports.items()})
        self.cwd = tmp
        self.out = open(tmp / "run.out", "w")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", "run", "--postgres", "--no-demo"],
                                     env=self.env, cwd=self.cwd, stdout=self.out, stderr=subprocess.STDOUT)

        def running() -> bool:
            assert self.proc.poll() is None, f"kezek run exited:\n{self.output()}"
            return "Kezek is running" in self.output()
        wait(running, "kezek run started", timeout=400, fail_fast=AssertionError)

    def output(self) -> str:
        return (self.cwd / "run.out").read_text()

    def run_json(self) -> dict:
        return json.loads((self.state / "run.json").read_text())

    def pid(self, name: str) -> int | None:
        d = self.run_json()
        return {**d["servers"], **d["parts"]}[name]["pid"]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def db(self, service: str) -> sa.Engine:
        # No pool: each connection closes when its block ends. A pooled
        # engine made at every poll of `settled` kept its connection until
        # the garbage collector found the engine, and a long wait ran the
        # server out of connections ("too many clients already").
        return sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.pg}/kezek_{service}",
                                poolclass=sa.pool.NullPool)

    def well(self, name: str) -> bool:
        """The part answers (a service's /ready, a heartbeat of the new
        process that says ok) or the server serves."""
        if name == "kafka":
            kafka_check(self.kafka)()
            return True
        if name == "temporal":
            temporal_check(self.temporal)()
            return True
        if name == "postgres":
            return httpx.get(f"{self.url('queue')}/ready", timeout=3).status_code == 200
        if name in self.ports:
            return httpx.get(f"{self.url(name)}/ready", timeout=3).status_code == 200
        beat = read_heartbeat(heartbeat_path(self.state, name))
        return bool(beat) and beat["pid"] == self.pid(name) and beat["status"] == "ok" \
            and time.time() - beat["time"] < 20

    def stop(self) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kezek.cli", "stop"], env=self.env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=200)


class QueueAdmin:
    """An administrator acting through the queue's API, from the console (as
    the demo loader does: the `cli` caller's token, development keys)."""

    def __init__(self, url: str):
        self.client = SyncServiceClient(url, keys=ServiceKeys.from_settings(Settings(_env_file=None)),
                                        caller="cli", audience="queue", timeout=30)

    def __call__(self, method: str, path: str, **kw):
        return self.client.call(method, f"/api/v1{path}", actor=ADMIN, **kw)

    def close(self) -> None:
        self.client.close()


def join_children(queue: QueueAdmin, kindergartens: list[str], children: int, prefix: str = "sup",
                  cohort: int = COHORT) -> list[str]:
    for kg in kindergartens:
        queue("PUT", f"/kindergartens/{kg}", json={
            "name": f"Ясли-сад {kg}", "district": "Bishkek/Leninsky", "address": "ул. Токтогула, 1",
            "lat": 42.87, "lon": 74.59, "languages": ["ky"]})
    ids = []
    for n in range(children):
        birth = datetime(cohort, 1, 1) + timedelta(days=7 * n)
        ids.append(f"{prefix}-{n}")
        queue("POST", "/queue-entries", json={
            "application_id": ids[-1], "pin": f"2{birth:%d%m%Y}{20000 + n:05d}", "surname": "Асанов",
            "name": "Айбек", "category": "general", "language": "ky", "preferences": kindergartens,
            "locale": "ky", "parent_id": f"parent-{ids[-1]}",
            "queue_date": (datetime.now(UTC) - timedelta(days=300 - n)).isoformat(),
        })
    return ids


def publish_place(queue: QueueAdmin, kg: str = KG, cohort: int = COHORT) -> None:
    """One free place; the queue service may still be reconnecting to its
    database, so an answer that says nothing was done is asked again."""
    def published() -> bool:
        try:
            queue("POST", f"/kindergartens/{kg}/places", json={"cohort": cohort, "language": "ky", "count": 1})
        except UpstreamError as exc:
            if exc.status >= 500:
                return False
            raise
        return True
    wait(published, "a place published", fail_fast=UpstreamError)


def referral_facts(system: System) -> tuple[list, dict, dict]:
    """The referrals, the issued events' ids by referral, and which
    consumer groups recorded each of them."""
    with system.db("queue").connect() as c:
        referrals = c.execute(sa.text("SELECT id, status, workflow_started_at FROM referrals")).all()
        issued = dict(c.execute(sa.text(
            "SELECT subject, event_id FROM outbox WHERE type = 'referral.issued.v1'")).all())
    consumed: dict[str, set[str]] = {}
    for service in ("notifications", "verification", "gateway"):
        with system.db(service).connect() as c:
            for consumer, event_id in c.execute(sa.text("SELECT consumer, event_id FROM processed_events")):
                consumed.setdefault(event_id, set()).add(consumer)
    return referrals, issued, consumed


def unsent(system: System) -> dict[str, int]:
    out = {}
    for service in ("registration", "queue", "verification", "notifications", "gateway"):
        with system.db(service).connect() as c:
            out[service] = c.execute(sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")).scalar()
            if service == "gateway":
                out["public"] = c.execute(sa.text("SELECT count(*) FROM public_outbox WHERE sent_at IS NULL")).scalar()
    return out


def workflow_answers(system: System, referral_id: int) -> bool:
    """The referral's workflow answers a query, so a worker runs it."""
    import asyncio

    from workflows.worker import connect

    async def ask() -> str:
        client = await connect(system.temporal)
        return await client.get_workflow_handle(f"referral-{referral_id}").query("status")

    return bool(asyncio.run(ask()))


@pytest.fixture
def folder():
    """Not pytest's tmp_path: another pytest run on this machine may clean
    old numbered folders away while this long test still runs in one."""
    path = open_temp_folder("kezek-supervision-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_each_part_killed_is_restarted_and_nothing_is_lost_then_stop_ends_everything(folder, artifacts_dir):
    system = System(folder)
    recovered: dict[str, float] = {}
    try:
        system.start()
        queue = QueueAdmin(system.url("queue"))
        join_children(queue, [KG], CHILDREN)
        publish_place(queue)
        # Every kind of part killed with -9 by its pid while work is in
        # flight, in three rounds: our processes together, then Kafka and
        # Temporal together, then PostgreSQL. A place is published in each
        # round, so its events wait in an outbox, on a topic or in Temporal.
        places = 1
        for round_ in (("queue", "relay", "consume-queue", "consume-notifications", "worker"),
                       ("kafka", "temporal"), ("postgres",)):
            before = {name: system.pid(name) for name in round_}
            for pid in before.values():
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            if "kafka" in round_:
                publish_place(queue)   # the API takes it; its events wait in the outbox
                places += 1
            for name in round_:
                wait(lambda: system.pid(name) not in (None, before[name]), f"{name} started again")
                wait(lambda: system.well(name), f"{name} well again")
                recovered[name] = round(time.monotonic() - killed, 1)
            if "kafka" not in round_:
                publish_place(queue)
                places += 1

        # PostgreSQL started again with the operator's settings.
        with system.db("queue").connect() as c:
            assert c.execute(sa.text("SHOW work_mem")).scalar() == "12MB"

        # Nothing lost: each place went to one child, each referral's
        # workflow runs, every outbox is drained, and each consumer group
        # recorded each referral's issued event once.
        def settled() -> bool:
            referrals, issued, consumed = referral_facts(system)
            return (len(referrals) == min(places, CHILDREN) and all(r.workflow_started_at for r in referrals)
                    and not any(unsent(system).values())
                    and all({"notifications", "verification.read_model", "gateway-public-projector"}
                            <= consumed.get(issued.get(f"referral:{r.id}"), set()) for r in referrals))
        wait(settled, "every place allocated and every event consumed", timeout=240)
        referrals, _, _ = referral_facts(system)
        assert len({r.id for r in referrals}) == len(referrals) and all(r.status == "live" for r in referrals)
        for r in referrals:
            assert workflow_answers(system, r.id)
        restarts = {**{k: v["restarts"] for k, v in system.run_json()["servers"].items()},
                    **{k: v["restarts"] for k, v in system.run_json()["parts"].items()}}
        for name in recovered:
            assert restarts[name] >= 1, name
        pids = [v["pid"] for g in ("servers", "parts") for v in system.run_json()[g].values()]
    finally:
        stopped = system.stop()
        if system.proc is not None:
            system.proc.wait(timeout=60)
    (artifacts_dir / "supervision.json").write_text(json.dumps({"recovery_seconds": recovered}, indent=1))
    print("recovery seconds:", recovered)
    assert stopped.returncode == 0 and "kezek stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert system.proc.returncode == 0, system.output()
    assert not (system.state / "run.pid").exists() and not (system.state / "run.json").exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], pid
    for port in (*system.ports.values(), int(system.kafka.rsplit(":")[1]), int(system.temporal.rsplit(":")[1]),
                 system.pg):
        assert not port_open(port), port
