"""The whole of Kezek for a benchmark, started as `kezek run --postgres`
starts it (kezek/supervisor.py): the Temporal dev server, a Kafka broker
and a PostgreSQL cluster, every database migrated, the five services, the
relays, a consumer process per service and the workflow workers, each its
own process, supervised. Everything in a temporary folder on free ports, so
a benchmark never meets a `make run` or another benchmark on this machine.

    with System(Path(tmp), relays=2) as kezek:
        kezek.url("gateway"), kezek.db_url("queue"), kezek.settings ...

The development SMS gateway (services/notifications/devservers.py) runs in
the benchmark's own process, so the benchmark sees each SMS as it is
accepted; the notifications service sends to it over HTTP.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "registration", "queue", "verification", "notifications")


class BenchFolder:
    """A benchmark's folder, which the `postgres` user can reach too (the
    server runs as that user when we are root): `keep` (its --dir) stays
    after the run; without it a temporary one, which close() (or the end of
    a `with` block) removes."""

    def __init__(self, keep: Path | None, prefix: str):
        self.keep = keep
        self.path = keep or Path(tempfile.mkdtemp(prefix=prefix))
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o755)

    def close(self) -> None:
        if self.keep is None:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "BenchFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stat_fields(path: str) -> list[str] | None:
    """The fields of a `/proc/.../stat` file after the command's name (which
    may hold spaces and brackets), from the state on; None if it is gone."""
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds_of(fields: list[str], first: int = 11) -> float:
    """User and system CPU seconds from `stat_fields` (its own at 11, its
    ended children's at 13)."""
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, own CPU s, ended children's CPU s) of a process."""
    fields = stat_fields(f"/proc/{pid}/stat")
    if fields is None:
        return None
    return int(fields[1]), cpu_seconds_of(fields), cpu_seconds_of(fields, 13)


def process_cpu(named: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and all its descendants (a
    descendant that is itself named counts for its own name only)."""
    stats = {int(d.name): st for d in Path("/proc").iterdir() if d.name.isdigit()
             if (st := _stat(int(d.name))) is not None}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _own, _ended) in stats.items():
        children.setdefault(ppid, []).append(pid)
    owner = {pid: name for name, pid in named.items()}
    out = {}
    for name, pid in named.items():
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            if p not in stats or (p != pid and p in owner):
                continue
            total += stats[p][1] + stats[p][2]
            todo.extend(children.get(p, ()))
        out[name] = round(total, 2)
    return out


class System:
    def __init__(self, state: Path, *, relays: int = 1, consumers_per_service: int = 1, workers: int = 1,
                 sms_gateway_url: str = "", env: Mapping[str, str] | None = None, log=print):
        from kezek.infra.procs import free_port

        self.state = state
        self.log = log
        self.ports = {s: free_port() for s in SERVICES}
        self.pg_port = free_port()
        self.kafka_port = free_port(span=2)   # Kafka's controller listens on the next port
        self.temporal_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEZEK_")}
        self.env.update({
            "KEZEK_STATE_DIR": str(state), "KEZEK_ENV": "development", "KEZEK_HOST": "127.0.0.1",
            "KEZEK_POSTGRES_PORT": str(self.pg_port), "KEZEK_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "KEZEK_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
            "KEZEK_TEMPORAL_UI_PORT": str(free_port()), "KEZEK_RUN_RELAYS": str(relays),
            "KEZEK_RUN_CONSUMERS_PER_SERVICE": str(consumers_per_service), "KEZEK_RUN_WORKERS": str(workers),
            "KEZEK_MAILBOX_PORT": str(free_port()), "KEZEK_SMTP_PORT": str(free_port()),
            # The gateway behind a load balancer, as in production: each client
            # counted under its own address (bench/load.py sends X-Forwarded-For).
            "KEZEK_TRUSTED_PROXIES": "127.0.0.1", "PYTHONUNBUFFERED": "1",
            **{f"KEZEK_{s.upper()}_PORT": str(p) for s, p in self.ports.items()},
        })
        if sms_gateway_url:
            self.env["KEZEK_SMS_GATEWAY_URL"] = sms_gateway_url
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None

    # -- where things are -------------------------------------------------------
    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def db_url(self, service: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/kezek_{service}"

    @property
    def command_env(self) -> dict[str, str]:
        """The environment of a `kezek` command run against this system (as
        the supervisor gives its parts)."""
        return {**self.env, "KEZEK_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/kezek"}

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def settings(self):
        """The settings every part runs with (for use cases the benchmark calls in process)."""
        from kezek.settings import Settings

        saved = dict(os.environ)
        try:
            os.environ.update({k: v for k, v in self.env.items() if k.startswith("KEZEK_")})
            return Settings(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/kezek")
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def parts(self) -> dict:
        return self._recorded().get("parts", {})

    def restarts(self) -> dict[str, int]:
        """The servers and parts the supervisor has started again so far
        (`run.json`), with how often: a part restarted during a run gives
        its CPU to the supervisor's figure and its users a moment of 503s."""
        recorded = self._recorded()
        return {name: v["restarts"] for group in ("servers", "parts") for name, v in recorded.get(group, {}).items()
                if v.get("restarts")}

    def _recorded(self) -> dict:
        try:
            return json.loads((self.state / "run.json").read_text())
        except (OSError, ValueError):
            return {}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user and system) spent so far by each server and part
        of the running system, with everything it started (PostgreSQL's
        backends, the dev server's children), ended children included; the
        supervisor under "supervisor". Two readings apart say where a
        stretch of time went."""
        return process_cpu({**({"supervisor": self.proc.pid} if self.proc is not None else {}), **self.pids()})

    def pids(self) -> dict[str, int]:
        """The process id of each server and part running now (`run.json`)."""
        recorded = self._recorded()
        return {name: v["pid"] for group in ("servers", "parts") for name, v in recorded.get(group, {}).items()
                if isinstance(v.get("pid"), int)}

    # -- life ---------------------------------------------------------------------
    def __enter__(self) -> "System":
        # A benchmark stopped with SIGTERM still stops the system (finally blocks run).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 600) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state, 0o755)
        from kezek.infra.procs import die_with_parent

        log = self.state / "supervisor.log"
        seen = log.stat().st_size if log.exists() else 0      # a restart: only what comes now counts
        out = open(log, "ab")
        # The supervisor stops everything when the benchmark ends, however it ends.
        self.proc = subprocess.Popen([sys.executable, "-m", "kezek.cli", "run", "--postgres", "--no-demo"],
                                     cwd=self.state, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=die_with_parent)
        out.close()
        t = time.monotonic()
        while b"Kezek is running" not in log.read_bytes()[seen:]:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kezek run exited ({self.proc.returncode}); see {self.state}/supervisor.log")
            if time.monotonic() - t > timeout:
                raise TimeoutError(f"kezek run not up after {timeout:.0f} s; see {self.state}/supervisor.log")
            time.sleep(0.5)
        self.log(f"kezek run up in {time.monotonic() - t:.1f} s: {', '.join(self.parts())}")

    def healthy(self) -> bool:
        try:
            return all(httpx.get(f"{self.url(s)}/health", timeout=5).status_code == 200 for s in SERVICES)
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)     # the supervisor stops its parts, then the servers
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
