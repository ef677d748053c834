"""Runs loops in threads until SIGINT/SIGTERM, then stops them together."""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from kezek.logging import get_logger

log = get_logger(__name__)


def run_loops(loops: list[tuple[str, Callable[[threading.Event], None]]]) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=fn, args=(stop,), name=name, daemon=True) for name, fn in loops]
    for t in threads:
        t.start()
    log.info("loops.started", loops=[name for name, _ in loops])
    while not stop.is_set():
        stop.wait(0.5)
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:
            log.error("loops.died", loops=dead)
            stop.set()
            for t in threads:
                t.join(timeout=10)
            return 1
    for t in threads:
        t.join(timeout=10)
    return 0
