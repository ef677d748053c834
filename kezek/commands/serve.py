"""`kezek serve SERVICE`: one service's HTTP API under uvicorn."""
from __future__ import annotations

import argparse

import uvicorn

from kezek import connections, tracing, wiring
from kezek.health import api_checks
from kezek.logging import configure_logging
from kezek.settings import SERVICES, Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek serve", description=__doc__)
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--port", type=int, help="default: KEZEK_<SERVICE>_PORT")
    args = p.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service=args.service)
    connections.configure(settings)
    tracing.configure(settings, args.service)
    app = wiring.create_app(args.service, settings)
    # /ready runs the app's own checks (its database) and those of what else
    # this process talks to (kezek.health).
    app.state.ready_checks = [*app.state.ready_checks, *api_checks(args.service, settings)]
    uvicorn.run(app, host=settings.host, port=args.port or settings.port_of(args.service),
                log_config=None, access_log=False, timeout_graceful_shutdown=5)
    return 0
