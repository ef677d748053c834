"""`kezek consume`: the services' Kafka consumers and background jobs."""
from __future__ import annotations

import argparse

from kezek import connections, wiring
from kezek.commands.background import run_loops
from kezek.logging import configure_logging
from kezek.settings import Settings


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="kezek consume", description=__doc__).parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service="consumers")
    connections.configure(settings)
    loops = [(c.name, c.run) for c in wiring.consumers(settings)]
    loops += [(getattr(j, "__name__", repr(j)), j) for j in wiring.jobs(settings)]
    if not loops:
        return 0
    return run_loops(loops)
