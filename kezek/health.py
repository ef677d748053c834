"""Is each part of Kezek well, and are the servers it talks to answering?

Two mechanisms, one set of checks:
- an HTTP service answers `/ready` (kezek.web) with the checks of the
  dependencies its process uses: its database, and Temporal when it acts on
  workflows. An API writes its events into its outbox, never to Kafka, so a
  Kafka outage does not take the APIs out of service (the relay catches up).
- a process without HTTP (relay, consumers, worker) writes a heartbeat file,
  `<state_dir>/health/<name>.json`, every few seconds: its pid, the time, its
  loops alive or dead and the result of each of its checks (its databases,
  Kafka, Temporal). `kezek health NAME` reads it (the compose health checks
  run it) and so does `kezek run`, which restarts a part whose heartbeat went
  stale (hung), as it restarts a part that exited.

A check is a callable that returns when the dependency answers and raises
(with the reason) when it does not.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

from kezek import connections

Check = Callable[[], None]

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0   # a heartbeat older than this: the process is hung or gone



def database_check(engine) -> Check:
    def check() -> None:
        import sqlalchemy as sa

        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    return check


def kafka_check(bootstrap: str, timeout_ms: int = 3000) -> Check:
    """A metadata round trip to the cluster (any broker of the bootstrap
    list may answer), on one admin connection kept between checks."""
    held: dict = {}
    lock = threading.Lock()

    def check() -> None:
        from kafka.admin import KafkaAdminClient

        with lock:
            try:
                if "admin" not in held:
                    held["admin"] = KafkaAdminClient(**connections.kafka(
                        bootstrap_servers=bootstrap, client_id="kezek-health", request_timeout_ms=timeout_ms,
                        bootstrap_timeout_ms=timeout_ms))
                brokers = held["admin"].describe_cluster().get("brokers") or []
                if not brokers:
                    raise ConnectionError(f"Kafka at {bootstrap} names no broker")
            except Exception:
                admin = held.pop("admin", None)
                if admin is not None:
                    try:
                        admin.close()
                    except Exception:
                        pass
                raise

    return check


class _TemporalProbe:
    """One client on an event loop of its own, so that sync code (the /ready
    route, the heartbeat thread) can ask the frontend's gRPC health check."""

    def __init__(self, address: str, namespace: str, timeout: float):
        self.address, self.namespace, self.timeout = address, namespace, timeout
        self.client = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, name="temporal-health", daemon=True).start()
        return self.loop

    async def _check(self) -> None:
        from temporalio.client import Client

        if self.client is None:
            self.client = await Client.connect(self.address, namespace=self.namespace, **connections.temporal())
        ok = await self.client.service_client.check_health(timeout=timedelta(seconds=self.timeout))
        if not ok:
            raise ConnectionError(f"Temporal at {self.address} is not serving")

    def __call__(self) -> None:
        with self.lock:
            future = asyncio.run_coroutine_threadsafe(self._check(), self._ensure_loop())
            try:
                future.result(timeout=self.timeout + 2)
            except Exception:
                future.cancel()
                self.client = None   # connect afresh next time
                raise


def temporal_check(address: str, namespace: str = "default", timeout: float = 3.0) -> Check:
    return _TemporalProbe(address, namespace, timeout)


async def temporal_check_async(client, timeout: float = 3.0) -> None:
    """The same check on a client the caller already holds (the worker)."""
    if not await client.service_client.check_health(timeout=timedelta(seconds=timeout)):
        raise ConnectionError("Temporal is not serving")


def api_checks(service: str, settings) -> list[tuple[str, Check]]:
    """What an HTTP service's /ready adds to its database check."""
    from kezek import wiring

    if service in wiring.API_USES_TEMPORAL:
        return [("temporal", temporal_check(settings.temporal_address, settings.temporal_namespace))]
    return []


def run_checks(checks: Iterable[tuple[str, Check]]) -> dict[str, str]:
    """name -> "ok" or the reason it failed."""
    out = {}
    for name, check in checks:
        try:
            check()
            out[name] = "ok"
        except Exception as exc:
            out[name] = repr(exc)[:300]
    return out


# ------------------------------------------------------------------ heartbeats

def heartbeat_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "health"


def heartbeat_path(state_dir: Path, name: str) -> Path:
    return heartbeat_dir(state_dir) / f"{name}.json"


def write_heartbeat(path: Path, *, loops: dict[str, bool], checks: dict[str, str],
                    extra: dict | None = None) -> dict:
    """`extra`: what else a reader may want (the process's metrics ports)."""
    report = {
        **(extra or {}),
        "pid": os.getpid(),
        "time": time.time(),
        "status": "ok" if all(loops.values()) and all(v == "ok" for v in checks.values()) else "failing",
        "loops": loops,
        "checks": checks,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report))
    os.replace(tmp, path)   # a reader never sees half a file
    return report


def read_heartbeat(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def heartbeat_age(report: dict | None, now: float | None = None) -> float | None:
    if not report or not isinstance(report.get("time"), (int, float)):
        return None
    return (now or time.time()) - report["time"]


class Heartbeat:
    """Runs the checks and writes the heartbeat every `every` seconds (the
    checks run in this thread, so a dependency that hangs delays the file
    and the file's age says so)."""

    def __init__(self, path: Path, checks: Iterable[tuple[str, Check]], loops: Callable[[], dict[str, bool]],
                 every: float = HEARTBEAT_SECONDS, extra: dict | None = None):
        self.path = Path(path)
        self.extra = extra
        self.checks = list(checks)
        self.loops = loops
        self.every = every

    def beat(self) -> dict:
        return write_heartbeat(self.path, loops=self.loops(), checks=run_checks(self.checks), extra=self.extra)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.beat()
            except Exception:   # a full disk must not take the process down
                pass
            stop.wait(self.every)
        self.path.unlink(missing_ok=True)
