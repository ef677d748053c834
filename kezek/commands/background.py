"""Runs loops in threads until SIGINT/SIGTERM, then stops them together;
writes the process's heartbeat (kezek.health) and serves its metrics
(kezek.metrics, on KEZEK_METRICS_PORT) meanwhile."""
from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from kezek import metrics
from kezek.health import Check, Heartbeat, heartbeat_path
from kezek.logging import get_logger

log = get_logger(__name__)

Loop = Callable[[threading.Event], None]


def add_name_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--name", help="this process's name, unique among the running parts: its heartbeat is "
                                       f"<state_dir>/health/NAME.json (default: {default})")


def services_parser(prog: str, doc: str, what: str, default_name: str) -> argparse.ArgumentParser:
    """The options of a process that runs `what` of every service, or of
    those named with --service."""
    from kezek.settings import SERVICES

    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service", action="append", choices=SERVICES,
                   help=f"only this service's {what} (repeatable; default: every service's)")
    add_name_option(p, default_name)
    return p


def started(name: str):
    """The settings of the background process `name`, with its logging,
    shared connections and tracing set up."""
    from kezek import connections, tracing
    from kezek.logging import configure_logging
    from kezek.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service=name)
    connections.configure(settings)
    tracing.configure(settings, name)
    return settings


def run_loops(loops: list[tuple[str, Loop]], *, heartbeat: Path | None = None,
              checks: Iterable[tuple[str, Check]] = (), settings=None) -> int:
    """Returns 0 when asked to stop, 1 when a loop died (the process then
    exits, and its supervisor starts it again)."""
    stop = threading.Event()
    served = metrics.serve(settings.metrics_port, settings.host) if settings is not None else None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=fn, args=(stop,), name=name, daemon=True) for name, fn in loops]
    for t in threads:
        t.start()
    if heartbeat is not None:
        beat = Heartbeat(heartbeat, checks, lambda: {t.name: t.is_alive() for t in threads},
                         extra={"metrics_port": served} if served else None)
        threading.Thread(target=beat.run, args=(stop,), name="heartbeat", daemon=True).start()
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
    if heartbeat is not None:
        heartbeat.unlink(missing_ok=True)
    return 0


def heartbeat_of(settings, name: str) -> Path:
    return heartbeat_path(settings.state_dir, name)
