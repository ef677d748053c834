"""`kezek stop`: asks a running `kezek run` to stop (as Ctrl-C does), and
makes sure it did: a supervisor that does not end in time is killed, and so
is any part or server it named in run.json that is still alive."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from kezek.settings import Settings

# The supervisor's own stop: parts 10 s, then Kafka, Temporal and
# PostgreSQL up to 30 s each, each escalating to SIGKILL.
WAIT_SECONDS = 120


def alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by its parent, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ours(pid: int, state: Path) -> bool:
    """A process `kezek run` started on this state folder (not a pid reused since)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kezek" in cmdline or str(state).encode() in cmdline


def leftovers(state: Path) -> list[int]:
    try:
        recorded = json.loads((state / "run.json").read_text())
    except (OSError, ValueError):
        return []
    pids = [v.get("pid") for group in ("servers", "parts") for v in recorded.get(group, {}).values()]
    return [p for p in pids if isinstance(p, int) and alive(p) and ours(p, state)]


def main(argv: list[str]) -> int:
    state = Settings().state_dir.resolve()
    pid_file = state / "run.pid"
    if not pid_file.exists():
        print("kezek is not running (no pid file)")
        return 0
    pid = int(pid_file.read_text().strip())
    if not alive(pid) or not ours(pid, state):
        print("kezek was not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT_SECONDS
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            print(f"kezek did not stop within {WAIT_SECONDS} s: killing it")
            os.kill(pid, signal.SIGKILL)
        else:
            print("kezek stopped")
    left = leftovers(state)
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        print(f"killed what it left running: pids {', '.join(map(str, left))}")
    pid_file.unlink(missing_ok=True)
    (state / "run.json").unlink(missing_ok=True)
    return 0
