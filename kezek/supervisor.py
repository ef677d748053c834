"""`kezek run` (what `make run` calls): the whole system on one machine,
supervised like an init system.

It starts the Temporal dev server (SQLite file under the state folder, UI
on) and a Kafka broker (and a local PostgreSQL with --postgres), migrates
every service's database, creates the topics, then runs as child processes
each HTTP service, the outbox relays (KEZEK_RUN_RELAYS), one consumer
process per service (`kezek consume --service NAME`,
KEZEK_RUN_CONSUMERS_PER_SERVICE of each) and the workflow workers
(KEZEK_RUN_WORKERS); waits until they answer, loads demo data and prints
where to open it. Then it watches:

- a part that exits is started again after a pause (1 s, doubled at each
  failure up to 30 s, back to 1 s once it has run a minute) and the log
  says so; everything else runs on;
- a relay, consumer or worker whose heartbeat went stale, or an HTTP
  service that stopped answering /health, is hung: killed and started again;
- Kafka, Temporal and PostgreSQL are started again on their own data and
  ports when they die; the parts reconnect by themselves.

KEZEK_RUN_NICE lowers the CPU priority of the processes it names, servers
included, each time they start.

`<state>/run.json` names every part with its pid and restarts. Ctrl-C or
`kezek stop` stops the parts (SIGTERM, SIGKILL after 10 s), then the servers
(likewise), and removes `run.pid` and `run.json`: stop always completes, and
every child dies with the supervisor even if it is killed with -9.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kezek import wiring
from kezek.commands.topics import PUBLIC_TOPIC_SUFFIX, all_topics
from kezek.health import STALE_AFTER_SECONDS, heartbeat_age, heartbeat_path, read_heartbeat
from kezek.infra.kafka import KafkaBroker, ensure_topics
from kezek.infra.postgres import PostgresCluster
from kezek.infra.procs import die_with_parent, free_port, port_open, wait_until
from kezek.infra.temporal import TemporalDevServer
from kezek.migrations import migration_services, upgrade
from kezek.settings import Settings, niceness_of, postgres_settings_of

__all__ = ["PUBLIC_TOPIC_SUFFIX", "Supervisor", "main"]

FIRST_DELAY = 1.0           # before a part that exited starts again
MAX_DELAY = 30.0
STEADY_AFTER = 60.0         # a part that ran this long starts again at FIRST_DELAY
STOP_TIMEOUT = 10.0         # SIGTERM, then SIGKILL
START_GRACE = 120.0         # a new part may take this long to answer or beat
HUNG_AFTER = 60.0           # unwell this long after the grace: killed and started again
CHECK_EVERY = 5.0
RUN_ENV = ("KEZEK_DATABASE_URL", "KEZEK_STATE_DIR", "KEZEK_KAFKA_REPLICATION_FACTOR", "KEZEK_KAFKA_MIN_INSYNC_REPLICAS")


def say(msg: str) -> None:
    print(f"[kezek] {msg}", flush=True)


class StopRequested(Exception):
    """Ctrl-C or SIGTERM while the supervisor waits on something long."""


@dataclass
class Part:
    """One of our child processes: `kezek <args>`."""
    name: str
    kind: str                  # service | relay | consumer | worker
    args: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    delay: float = FIRST_DELAY
    due: float | None = None   # when it starts again, once it has exited
    unwell_since: float | None = None
    checked: float = 0.0
    env: dict[str, str] = field(default_factory=dict)   # its own settings (metrics ports)


@dataclass
class Server:
    """Kafka, Temporal or PostgreSQL: `alive()`, `start()`, `stop()`, `pid`."""
    name: str
    server: object
    restarts: int = 0
    delay: float = FIRST_DELAY
    due: float | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int | None:
        return self.server.pid


def replica_base(name: str) -> str | None:
    """The name a replica's name is numbered from (consume-gateway-2:
    consume-gateway); None for a name that is not numbered."""
    base, _, number = name.rpartition("-")
    return base if base and number.isdigit() else None


def lower_session_group(pid: int, level: int) -> None:
    """Linux's scheduler shares the CPU between sessions first when its
    autogroups are on (the default of desktop and many server kernels), and
    a process's niceness then counts only against its own session's other
    processes. Every server and part runs in a session of its own, so the
    group's niceness is what gives it less of the CPU than the others: set
    here when the kernel has autogroups (and left alone where it has none),
    and only for a process that leads its session (else the group is its
    starter's too)."""
    try:
        if os.getsid(pid) != pid:
            return
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(level))
    except OSError:             # ended, or no autogroups
        pass


class Supervisor:
    def __init__(self, settings: Settings, postgres: bool):
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.use_postgres = postgres
        self.servers: list[Server] = []
        self.parts: list[Part] = []
        self.env = dict(os.environ)
        self.interruptible = True
        self.stopping = False
        self.levels = niceness_of(settings.run_nice)     # KEZEK_RUN_NICE: {process: niceness}
        self._written = ""
        # The services' health asked over kept connections: httpx.get made a
        # client each time, and its TLS context took 36 ms of CPU, each of
        # the five services every CHECK_EVERY seconds.
        self.http = httpx.Client(timeout=2)
        self.demo_notes: dict[str, list[str]] = {}   # printed beside each service's address
        # Development only (the tests wire their own SMTP server; production sends for real).
        self.mailbox = settings.env == "development" and wiring.optional_module("services.notifications.mailbox")
        if self.mailbox:
            # E-mail and SMS go to the development mailbox, whose page shows them
            # (unless the operator pointed them elsewhere).
            self.env.setdefault("KEZEK_SMS_GATEWAY_URL", f"http://{settings.host}:{settings.mailbox_port}/send")
            self.env.setdefault("KEZEK_NOTIFICATIONS_EMAIL_TRANSPORT", "smtp")

    # -- signals -----------------------------------------------------------
    def request_stop(self, *_) -> None:
        self.stopping = True
        if self.interruptible:
            raise StopRequested()

    # -- infrastructure ----------------------------------------------------
    def start_infrastructure(self) -> None:
        s = self.settings
        t_host, _, t_port = s.temporal_address.rpartition(":")
        k_host, _, k_port = s.kafka_bootstrap.rpartition(":")
        for port, what in ((int(t_port), "Temporal"), (int(k_port), "Kafka"), (s.gateway_port, "the gateway"),
                           *(((s.mailbox_port, "the mailbox"), (s.smtp_port, "the mailbox's SMTP"))
                             if self.mailbox else ())):
            if port_open(port):
                raise SystemExit(f"port {port} for {what} is taken: is kezek already running? (make stop)")
        say(f"starting Temporal dev server on {s.temporal_address} (UI :{s.temporal_ui_port})")
        # Each server is in self.servers before it starts, so that a Ctrl-C
        # while it starts stops it too.
        temporal = TemporalDevServer(self.state / "temporal", port=int(t_port), ui_port=s.temporal_ui_port)
        self.servers.append(Server("temporal", temporal))
        temporal.start()
        self.lower_priority("temporal", temporal.pid)
        say(f"starting Kafka on {s.kafka_bootstrap}")
        # One local broker: every partition has one copy.
        kafka = KafkaBroker(self.state / "kafka", port=int(k_port), controller_port=int(k_port) + 1,
                            partitions=s.kafka_partitions, replication_factor=1, min_insync_replicas=1)
        self.servers.append(Server("kafka", kafka))
        kafka.start()
        self.lower_priority("kafka", kafka.pid)
        self.env.update(KEZEK_KAFKA_REPLICATION_FACTOR="1", KEZEK_KAFKA_MIN_INSYNC_REPLICAS="1")
        ensure_topics(s.kafka_bootstrap, all_topics(s), partitions=s.kafka_partitions, replication_factor=1,
                      min_insync_replicas=1)
        if self.use_postgres:
            self.state.chmod(0o755)
            pg = PostgresCluster(self.state / "postgres", port=s.postgres_port,
                                 settings=postgres_settings_of(s.run_postgres_settings))
            self.servers.append(Server("postgres", pg))
            if pg.alive():   # left by a supervisor that was killed: ours, on our data
                say(f"PostgreSQL already runs on {self.state / 'postgres'} (pid {pg.pid}): using it")
            else:
                say(f"starting PostgreSQL on 127.0.0.1:{s.postgres_port}")
                pg.start()
            self.lower_priority("postgres", pg.pid)
            self.env["KEZEK_DATABASE_URL"] = pg.url("kezek")
        self.env["KEZEK_STATE_DIR"] = str(self.state)
        self.write_state()

    def migrate(self) -> None:
        settings = self.settings_for_children()
        for service in migration_services():
            upgrade(service, settings.database_url_for(service), settings=settings)
        say(f"migrated {', '.join(migration_services())}")

    # -- CPU priority (KEZEK_RUN_NICE) -------------------------------------
    def niceness(self, name: str) -> int:
        """How far KEZEK_RUN_NICE lowers the process `name`: by its own
        level, or its base name's for a replica (consume-gateway-2)."""
        return self.levels.get(name, self.levels.get(replica_base(name), 0))

    def check_niceness(self) -> None:
        """Every name in KEZEK_RUN_NICE is one of the processes to start."""
        names = {p.name for p in self.plan()} | {"temporal", "kafka", *(("postgres",) if self.use_postgres else ())}
        names |= {base for n in names if (base := replica_base(n))}
        unknown = sorted(set(self.levels) - names)
        if unknown:
            raise SystemExit(f"KEZEK_RUN_NICE names no process of `kezek run`: {', '.join(unknown)} "
                             f"(processes: {', '.join(sorted(names))})")

    def lower_priority(self, name: str, pid: int | None) -> None:
        """A started server's threads (by its level, from this process's
        niceness, as `os.nice` does for a part) and its session's group at
        its niceness; the threads and processes it starts after this inherit
        them. Our own parts get theirs before they run (`spawn`)."""
        level = self.niceness(name)
        if not level or pid is None:
            return
        target = min(os.getpriority(os.PRIO_PROCESS, 0) + level, 19)
        try:
            tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except FileNotFoundError:      # no /proc: the process's first thread
            tasks = [pid]
        for tid in tasks:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, target)
            except OSError:
                pass                   # a thread that has ended
        lower_session_group(pid, level)

    # -- our own processes -------------------------------------------------
    def plan(self) -> list[Part]:
        s = self.settings

        def numbered(base: str, n: int, i: int) -> str:
            return base if n == 1 else f"{base}-{i}"

        parts = [Part(service, "service", ["serve", service]) for service in wiring.services_with_api()]
        if self.mailbox:
            parts.append(Part("mailbox", "service", ["mailbox"]))
        relays = s.run_relays
        if relays > 1 and not self.env.get("KEZEK_DATABASE_URL", s.database_url).startswith("postgresql"):
            say(f"KEZEK_RUN_RELAYS={relays} needs PostgreSQL (relays claim rows there): starting one relay")
            relays = 1
        for i in range(1, relays + 1):
            name = numbered("relay", relays, i)
            parts.append(Part(name, "relay", ["relay", "--name", name]))
        for service in wiring.services_with_background():
            # consume-SERVICE runs its consumers and jobs, or its consumers only
            # and jobs-SERVICE its jobs (KEZEK_RUN_JOBS_APART)
            halves = [("consume", "consumers"), ("jobs", "jobs")] if service in s.jobs_apart else [("consume", None)]
            n = s.consumers_of(service)
            for prefix, only in halves:
                for i in range(1, n + 1):
                    name = numbered(f"{prefix}-{service}", n, i)
                    args = ["consume", "--service", service, *(["--only", only] if only else []), "--name", name]
                    parts.append(Part(name, "consumer", args))
        ports = self.metrics_ports()
        if wiring.has_workflows():
            for i in range(1, s.run_workers + 1):
                name = numbered("worker", s.run_workers, i)
                parts.append(Part(name, "worker", ["worker", "--name", name],
                                  env={"KEZEK_TEMPORAL_METRICS_PORT": str(next(ports))}))
        # Each process without an HTTP API serves its metrics on a port of its own.
        for part in parts:
            if part.kind != "service":
                part.env["KEZEK_METRICS_PORT"] = str(next(ports))
        return parts

    def metrics_ports(self):
        """Free ports, none of them one that a server or service of ours is
        about to take (a free port is only free until someone binds it)."""
        s = self.settings
        taken = {s.port_of(service) for service in wiring.services_with_api()}
        taken |= {s.temporal_ui_port, s.postgres_port}
        for address in (s.temporal_address, s.kafka_bootstrap):
            port = int(address.rsplit(":", 1)[1])
            taken |= {port, port + 1}
        while True:
            port = free_port()
            if port not in taken:
                taken.add(port)
                yield port

    def spawn(self, part: Part) -> None:
        log = open(self.state / "logs" / f"{part.name}.log", "ab")
        level = self.niceness(part.name)

        def before_exec() -> None:
            die_with_parent()
            os.nice(level)
            lower_session_group(os.getpid(), level)     # its own session, made before this runs

        part.proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", *part.args], env={**self.env, **part.env},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=before_exec if level else die_with_parent)
        log.close()
        part.started = time.monotonic()
        part.due = part.unwell_since = None

    def start_processes(self) -> None:
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        self.parts = self.plan()
        for part in self.parts:
            self.spawn(part)
        self.write_state()

    def wait_healthy(self, timeout: float = 90) -> None:
        for part in self.parts:
            if part.kind == "service":
                wait_until(lambda p=part: self.answers(p), timeout,
                           f"{part.name} ({self.settings.url_of(part.name)}); see {self.state}/logs/{part.name}.log",
                           part.proc)

    def answers(self, part: Part) -> bool:
        try:
            return self.http.get(f"{self.settings.url_of(part.name)}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def well(self, part: Part) -> bool | None:
        """Liveness: True, False, or None while it is too early to say."""
        if part.kind == "service":
            return self.answers(part)
        report = read_heartbeat(heartbeat_path(self.state, part.name))
        if report is None or report.get("pid") != part.proc.pid:
            return None     # not written yet by this incarnation
        age = heartbeat_age(report)
        return age is not None and age <= STALE_AFTER_SECONDS

    def load_demo_data(self) -> None:
        demo = wiring.optional_module("kezek.demo")
        if demo is not None:
            loaded = demo.load(self.settings_for_children())
            say(loaded.summary)
            self.demo_notes = loaded.notes

    def settings_for_children(self) -> Settings:
        return Settings(database_url=self.env.get("KEZEK_DATABASE_URL", ""), state_dir=self.state)

    def print_urls(self) -> None:
        s = self.settings
        say("Kezek is running. Open:")
        serving = set(wiring.services_with_api()) | ({"mailbox"} if self.mailbox else set())
        rows = [
            ("gateway", "Parent portal", f"{s.url_of('gateway')}/"),
            ("gateway", "API docs", f"{s.url_of('gateway')}/api/docs"),
            ("gateway", "ReDoc API docs", f"{s.url_of('gateway')}/api/redoc"),
            ("gateway", "Event catalogue", f"{s.url_of('gateway')}/events"),
            ("mailbox", "Mailbox", f"{s.url_of('mailbox')}/"),
            ("verification", "Staff pages", f"{s.url_of('verification')}/"),
            ("queue", "Queue API docs", f"{s.url_of('queue')}/docs"),
            ("registration", "Registration API docs", f"{s.url_of('registration')}/docs"),
            ("notifications", "Notifications API docs", f"{s.url_of('notifications')}/docs"),
            (None, "Temporal UI", f"http://{s.host}:{s.temporal_ui_port}/"),
        ]
        notes = dict(self.demo_notes)
        notes.setdefault("mailbox", [f"every e-mail (SMTP {s.smtp_host}:{s.smtp_port}) and SMS sent in development, "
                                     "newest first: e-mail codes and activation links are a click away"])
        for service, label, url in rows:
            if service is not None and service not in serving:
                continue
            print(f"  {label:<24} {url}", flush=True)
            for line in notes.pop(service, []):
                print(f"    {line}", flush=True)
        say(f"logs in {self.state}/logs; stop with Ctrl-C or `make stop`")

    # -- watching ----------------------------------------------------------
    def watch(self) -> int:
        self.interruptible = False
        while not self.stopping:
            for server in self.servers:
                self.tend_server(server)
            for part in self.parts:
                self.tend_part(part)
            self.write_state()
            time.sleep(0.5)
        return 0

    def tend_server(self, srv: Server) -> None:
        now = time.monotonic()
        if srv.due is None:
            if srv.server.alive():
                return
            if now - srv.started >= STEADY_AFTER:
                srv.delay = FIRST_DELAY
            say(f"{srv.name} died; starting it again")
            srv.due = now
        if now < srv.due or self.stopping:
            return
        t = time.monotonic()
        try:
            self.interruptible = True
            srv.server.start()
        except StopRequested:
            raise
        except Exception as exc:
            srv.due = time.monotonic() + srv.delay
            say(f"{srv.name} did not start ({exc!r}); trying again in {srv.delay:.0f} s")
            srv.delay = min(srv.delay * 2, MAX_DELAY)
            return
        finally:
            self.interruptible = False
        self.lower_priority(srv.name, srv.pid)
        srv.restarts += 1
        srv.due = None
        srv.started = time.monotonic()
        say(f"{srv.name} is back after {time.monotonic() - t:.1f} s (restart {srv.restarts})")

    def tend_part(self, part: Part) -> None:
        now = time.monotonic()
        if part.due is None and part.proc.poll() is None:
            if now - part.checked < CHECK_EVERY:
                return
            part.checked = now
            well = self.well(part)
            if well or (well is None and now - part.started < START_GRACE):
                part.unwell_since = None
                return
            part.unwell_since = part.unwell_since or now
            if now - part.started < START_GRACE or now - part.unwell_since < HUNG_AFTER:
                return
            say(f"{part.name} (pid {part.proc.pid}) is hung: killing it")
            self.kill(part.proc)
        if part.due is None:
            if now - part.started >= STEADY_AFTER:
                part.delay = FIRST_DELAY
            part.due = now + part.delay
            say(f"{part.name} (pid {part.proc.pid}) exited with code {part.proc.returncode}; starting it again in "
                f"{part.delay:.0f} s (see {self.state}/logs/{part.name}.log)")
            part.delay = min(part.delay * 2, MAX_DELAY)
        elif now >= part.due:
            self.spawn(part)
            part.restarts += 1
            say(f"{part.name} started again (pid {part.proc.pid}, restart {part.restarts})")

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            # What the parts were given beyond the shell's settings (`kezek status` reads it).
            "env": {k: self.env[k] for k in RUN_ENV if k in self.env and self.env[k] != os.environ.get(k)},
            "servers": {s.name: {"pid": s.pid, "restarts": s.restarts} for s in self.servers},
            "parts": {p.name: {"kind": p.kind, "pid": p.proc.pid if p.proc and p.proc.poll() is None else None,
                               "restarts": p.restarts,
                               **{k.removeprefix("KEZEK_").lower(): int(v) for k, v in p.env.items()
                                  if k.endswith("METRICS_PORT")}} for p in self.parts},
        }
        text = json.dumps(state, indent=1)
        if text != self._written:
            tmp = self.state / "run.json.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.state / "run.json")
            self._written = text

    # -- stopping ----------------------------------------------------------
    def stop(self) -> None:
        """Parts first, all at once (SIGTERM, SIGKILL after STOP_TIMEOUT),
        then the servers in reverse order. Never raises, always ends."""
        self.interruptible = False
        running = [p.proc for p in self.parts if p.proc is not None and p.proc.poll() is None]
        for proc in running:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"pid {proc.pid} did not stop within {STOP_TIMEOUT:.0f} s: killing it")
                self.kill(proc)
        for srv in reversed(self.servers):
            try:
                srv.server.stop()
            except Exception as exc:
                say(f"stopping {srv.name} failed ({exc!r}); killing it")
                try:
                    srv.server.stop(hard=True)
                except Exception:
                    pass
        self.parts.clear()
        self.servers.clear()
        self.http.close()
        (self.state / "run.json").unlink(missing_ok=True)


def running_supervisor(state: Path) -> int | None:
    """The pid of a `kezek run` on this state folder, if one is alive."""
    try:
        pid = int((state / "run.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"kezek" in cmdline else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postgres", action="store_true", help="use a local PostgreSQL instead of SQLite files")
    p.add_argument("--no-demo", action="store_true", help="do not load demo data")
    args = p.parse_args(argv)
    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.state_dir / "run.pid"
    if (other := running_supervisor(settings.state_dir.resolve())) is not None:
        raise SystemExit(f"kezek is already running (pid {other}); stop it with `make stop`")
    sup = Supervisor(settings, postgres=args.postgres)
    signal.signal(signal.SIGINT, sup.request_stop)
    signal.signal(signal.SIGTERM, sup.request_stop)
    rc = 0
    try:
        pid_file.write_text(str(os.getpid()))
        sup.check_niceness()
        sup.start_infrastructure()
        sup.migrate()
        sup.start_processes()
        sup.wait_healthy()
        if not args.no_demo:
            sup.load_demo_data()
        sup.print_urls()
        rc = sup.watch()
    except StopRequested:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping")
        sup.stop()
        pid_file.unlink(missing_ok=True)
        say("stopped")
    return rc
