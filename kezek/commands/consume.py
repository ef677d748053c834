"""`kezek consume`: the services' Kafka consumers and background jobs.

`--service NAME` runs one service's only (what `kezek run` and the compose
file do: one process per service, so a slow or crashing service holds up no
other). Start the same command several times to scale out: the replicas of
a consumer share its consumer group, which spreads the partitions among
them, and the jobs claim their work (see each service's jobs.py)."""
from __future__ import annotations

import argparse

from kezek import connections, tracing, wiring
from kezek.commands.background import add_name_option, heartbeat_of, run_loops
from kezek.db import make_engine
from kezek.health import database_check, kafka_check, temporal_check
from kezek.logging import configure_logging
from kezek.settings import SERVICES, Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek consume", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service", action="append", choices=SERVICES,
                   help="only this service's consumers and jobs (repeatable; default: every service's)")
    add_name_option(p, "consume-SERVICE, or consume for every service")
    args = p.parse_args(argv)
    services = tuple(args.service or SERVICES)
    name = args.name or (f"consume-{services[0]}" if len(services) == 1 else "consume")
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service=name)
    connections.configure(settings)
    tracing.configure(settings, name)
    loops = [(c.name, c.run) for c in wiring.consumers(settings, services)]
    loops += [(getattr(j, "__name__", repr(j)), j) for j in wiring.jobs(settings, services)]
    if not loops:
        return 0
    checks = [(f"database:{s}", database_check(make_engine(settings.database_url_for(s))))
              for s in services if s in wiring.services_with_background()]
    checks.append(("kafka", kafka_check(settings.kafka_bootstrap)))
    if set(wiring.JOBS_USE_TEMPORAL) & set(services):
        checks.append(("temporal", temporal_check(settings.temporal_address, settings.temporal_namespace)))
    return run_loops(loops, heartbeat=heartbeat_of(settings, name), checks=checks, settings=settings)
