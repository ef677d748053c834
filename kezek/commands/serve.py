"""`kezek serve SERVICE`: one service's HTTP API under uvicorn. The gateway,
where every parent's request lands, may run several worker processes on
one port (`KEZEK_GATEWAY_WORKERS`); each builds its own app."""
from __future__ import annotations

import argparse
import gc
import os

import uvicorn

from kezek import connections, tracing, wiring
from kezek.client import SERVER_KEEP_ALIVE
from kezek.health import api_checks
from kezek.logging import configure_logging
from kezek.settings import SERVICES, Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek serve", description=__doc__)
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--port", type=int, help="default: KEZEK_<SERVICE>_PORT")
    args = p.parse_args(argv)
    settings = Settings()
    workers = wiring.http_workers(args.service, settings)
    options = dict(host=settings.host, port=args.port or settings.port_of(args.service),
                   log_config=None, access_log=False, timeout_graceful_shutdown=5,
                   timeout_keep_alive=SERVER_KEEP_ALIVE)
    if workers > 1:
        os.environ[_SERVICE] = args.service
        uvicorn.run("kezek.commands.serve:app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(app(args.service), **options)
    return 0


_SERVICE = "KEZEK_SERVE_SERVICE"


def app(service: str | None = None):
    """The service's app as one process serves it (every worker calls this)."""
    service = service or os.environ[_SERVICE]
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service=service)
    connections.configure(settings)
    tracing.configure(settings, service)
    built = wiring.create_app(service, settings)
    # /ready runs the app's own checks (its database) and those of what else
    # this process talks to (kezek.health).
    built.state.ready_checks = [*built.state.ready_checks, *api_checks(service, settings)]
    settle_memory()
    return built


# Objects allocated between two young collections (Python's default: 700).
# A request of the gateway's makes a few thousand: at 700 the collector ran
# every request or two (88 young collections in 2,000 `/api/v1/me`, in
# process), each pausing every request in flight.
YOUNG_THRESHOLD = 7000


def settle_memory() -> None:
    """What start-up made (modules, the app, its catalogues, templates) is
    moved out of the collector's sight (gc.freeze: never examined again,
    never freed: it lives as long as the process anyway), and young
    collections run every YOUNG_THRESHOLD allocations. In process, 2,000
    `/api/v1/me` made 8 young collections instead of 88, their pauses
    together 65-70 ms instead of 196 ms (load 20-30)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
