"""A PostgreSQL cluster from Debian's packages, in a folder of ours, on
loopback only. As root, the server runs as the `postgres` user."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kezek.infra.procs import free_port, wait_until


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise FileNotFoundError("PostgreSQL server not installed: run deploy/local/bootstrap.sh")
    return Path(found[-1])


# A benchmark's cluster, sized for a large queue in memory.
BENCHMARK_SETTINGS = {"shared_buffers": "1GB", "work_mem": "64MB", "maintenance_work_mem": "512MB",
                      "max_wal_size": "8GB", "checkpoint_timeout": "30min", "jit": "off"}


def open_temp_folder(prefix: str) -> Path:
    """A new folder under /tmp that the `postgres` user can reach too (the
    server runs as that user when we are root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresCluster:
    data_dir: Path
    port: int = field(default_factory=free_port)
    # Tests and benchmarks throw their data away: durability buys nothing there.
    durable: bool = True
    settings: dict[str, str] = field(default_factory=dict)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def ready(self) -> bool:
        r = subprocess.run([str(pg_bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                           capture_output=True)
        return r.returncode == 0

    def start(self, timeout: float = 60) -> "PostgresCluster":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(_as_owner([str(pg_bin() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                                      "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                           check=True, capture_output=True)
        opts = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                "unix_socket_directories": str(self.data_dir), "max_connections": "200"}
        if not self.durable:
            opts.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        opts.update(self.settings)
        o = " ".join(f"-c {k}={v}" for k, v in opts.items())
        subprocess.run(_as_owner([str(pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-l",
                                  str(self.data_dir / "server.log"), "-o", o, "-w", "-t", str(int(timeout)), "start"]),
                       check=True, capture_output=True)
        wait_until(self.ready, timeout, "PostgreSQL")
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (pg_ctl leaves it running on
        its own, so this is how a supervisor watches it)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def alive(self) -> bool:
        return self.pid is not None

    def stop(self, hard: bool = False, timeout: float = 30) -> None:
        """A fast shutdown (sessions ended, no waiting for clients), then
        immediate (at once when `hard`), then SIGKILL: it always ends."""
        for mode in ("immediate",) if hard else ("fast", "immediate"):
            pid = self.pid
            if pid is None:
                return
            try:
                subprocess.run(_as_owner([str(pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                                          "-w", "-t", str(int(timeout)), "stop"]),
                               capture_output=True, timeout=timeout + 10)
            except subprocess.TimeoutExpired:
                pass
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: self.pid is None, 10, "PostgreSQL to end")
