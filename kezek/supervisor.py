"""`kezek run` (what `make run` calls): the whole system on one machine.

Starts the Temporal dev server (SQLite file under the state folder, UI on)
and a Kafka broker, migrates every service's database (SQLite files by
default, or a local PostgreSQL with --postgres), then runs the services, the
outbox relay, the consumers and the workflow worker as child processes,
waits until they answer, loads demo data and prints where to open it.
Ctrl-C or `kezek stop` stops everything, children first.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kezek import wiring
from kezek.events import aggregates
from kezek.infra.kafka import KafkaBroker, ensure_topics
from kezek.infra.postgres import PostgresCluster
from kezek.infra.procs import port_open, stop_process, wait_until
from kezek.infra.temporal import TemporalDevServer
from kezek.migrations import migration_services, upgrade
from kezek.settings import Settings

PUBLIC_TOPIC_SUFFIX = "public.v1"


def say(msg: str) -> None:
    print(f"[kezek] {msg}", flush=True)


class Supervisor:
    def __init__(self, settings: Settings, postgres: bool):
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.use_postgres = postgres
        self.infra: list = []
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ)

    # -- infrastructure ----------------------------------------------------
    def start_infrastructure(self) -> None:
        s = self.settings
        t_host, _, t_port = s.temporal_address.rpartition(":")
        k_host, _, k_port = s.kafka_bootstrap.rpartition(":")
        for port, what in ((int(t_port), "Temporal"), (int(k_port), "Kafka"), (s.gateway_port, "the gateway")):
            if port_open(port):
                raise SystemExit(f"port {port} for {what} is taken: is kezek already running? (make stop)")
        say(f"starting Temporal dev server on {s.temporal_address} (UI :{s.temporal_ui_port})")
        temporal = TemporalDevServer(self.state / "temporal", port=int(t_port), ui_port=s.temporal_ui_port)
        self.infra.append(temporal.start())
        say(f"starting Kafka on {s.kafka_bootstrap}")
        kafka = KafkaBroker(self.state / "kafka", port=int(k_port), controller_port=int(k_port) + 1)
        self.infra.append(kafka.start())
        topics = [s.topic(a) for a in aggregates()] + [s.topic(PUBLIC_TOPIC_SUFFIX)]
        ensure_topics(s.kafka_bootstrap, topics)
        if self.use_postgres:
            data = self.state / "postgres"
            self.state.chmod(0o755)
            say("starting PostgreSQL")
            pg = PostgresCluster(data, port=55432).start()
            self.infra.append(pg)
            self.env["KEZEK_DATABASE_URL"] = pg.url("kezek")
        self.env["KEZEK_STATE_DIR"] = str(self.state)

    def migrate(self) -> None:
        settings = self.settings_for_children()
        for service in migration_services():
            upgrade(service, settings.database_url_for(service))
        say(f"migrated {', '.join(migration_services())}")

    # -- our own processes -------------------------------------------------
    def spawn(self, name: str, *args: str) -> None:
        log = open(self.state / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, proc))

    def start_processes(self) -> None:
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        for service in wiring.services_with_api():
            self.spawn(service, "serve", service)
        self.spawn("relay", "relay")
        self.spawn("consumers", "consume")
        if wiring.has_workflows():
            self.spawn("worker", "worker")

    def wait_healthy(self, timeout: float = 90) -> None:
        for service in wiring.services_with_api():
            url = f"{self.settings.url_of(service)}/health"
            proc = dict(self.children)[service]

            def answers() -> bool:
                try:
                    return httpx.get(url, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(answers, timeout, f"{service} ({url}); see {self.state}/logs/{service}.log", proc)

    def load_demo_data(self) -> None:
        demo = wiring.optional_module("kezek.demo")
        if demo is not None:
            say(demo.load(self.settings_for_children()))

    def settings_for_children(self) -> Settings:
        return Settings(database_url=self.env.get("KEZEK_DATABASE_URL", ""), state_dir=self.state)

    def print_urls(self) -> None:
        s = self.settings
        say("Kezek is running. Open:")
        serving = set(wiring.services_with_api())
        rows = [
            ("gateway", "Parent portal", f"{s.url_of('gateway')}/"),
            ("gateway", "API docs", f"{s.url_of('gateway')}/api/docs"),
            ("verification", "Caseworker UI", f"{s.url_of('verification')}/"),
            ("queue", "Queue API docs", f"{s.url_of('queue')}/docs"),
            ("registration", "Registration API docs", f"{s.url_of('registration')}/docs"),
            ("notifications", "Notifications API docs", f"{s.url_of('notifications')}/docs"),
            (None, "Temporal UI", f"http://{s.host}:{s.temporal_ui_port}/"),
        ]
        for service, label, url in rows:
            if service is not None and service not in serving:
                continue
            print(f"  {label:<24} {url}", flush=True)
        say(f"logs in {self.state}/logs; stop with Ctrl-C or `make stop`")

    # -- lifecycle ---------------------------------------------------------
    def stop(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.children):
            stop_process(proc, timeout=15)
        for server in reversed(self.infra):
            server.stop()
        self.children.clear()
        self.infra.clear()

    def watch(self, stop_requested) -> int:
        while not stop_requested():
            for name, proc in self.children:
                if proc.poll() is not None:
                    say(f"{name} exited with code {proc.returncode}; see {self.state}/logs/{name}.log")
                    return 1
            time.sleep(0.5)
        return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postgres", action="store_true", help="use a local PostgreSQL instead of SQLite files")
    p.add_argument("--no-demo", action="store_true", help="do not load demo data")
    args = p.parse_args(argv)
    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.state_dir / "run.pid"
    stopping = {"flag": False}

    def request_stop(*_):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    sup = Supervisor(settings, postgres=args.postgres)
    rc = 0
    try:
        pid_file.write_text(str(os.getpid()))
        sup.start_infrastructure()
        sup.migrate()
        sup.start_processes()
        sup.wait_healthy()
        if not args.no_demo:
            sup.load_demo_data()
        sup.print_urls()
        rc = sup.watch(lambda: stopping["flag"])
    finally:
        say("stopping")
        sup.stop()
        pid_file.unlink(missing_ok=True)
        say("stopped")
    return rc
