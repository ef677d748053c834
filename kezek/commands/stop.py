"""`kezek stop`: asks a running `kezek run` to stop (as Ctrl-C does)."""
from __future__ import annotations

import os
import signal
import time

from kezek.settings import Settings


def main(argv: list[str]) -> int:
    pid_file = Settings().state_dir / "run.pid"
    if not pid_file.exists():
        print("kezek is not running (no pid file)")
        return 0
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print("kezek was not running")
        return 0
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("kezek stopped")
            return 0
        time.sleep(0.1)
    print("kezek did not stop within 60 s")
    return 1
