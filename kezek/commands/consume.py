"""`kezek consume`: the services' Kafka consumers and background jobs.

`--service NAME` runs one service's only (what `kezek run` and the compose
file do: one process per service, so a slow or crashing service holds up no
other). `--only consumers` or `--only jobs` runs one half of them, e.g.
notifications' dispatchers (`jobs-notifications`) apart from its consumer, to
scale sending on its own (on one two-core host it gained nothing: bench/README.md,
"The dispatchers in a process of their own"). Start the same command several
times to scale out: the replicas of a consumer share its consumer group,
which spreads the partitions among them, and the jobs claim their work (see
each service's jobs.py)."""
from __future__ import annotations

from kezek import wiring
from kezek.commands.background import heartbeat_of, run_loops, services_parser, started
from kezek.db import service_engine
from kezek.health import database_check, kafka_check, temporal_check
from kezek.settings import SERVICES


def main(argv: list[str]) -> int:
    parser = services_parser("kezek consume", __doc__, "consumers and jobs",
                             "consume-SERVICE (jobs-SERVICE with --only jobs), or consume for every service")
    parser.add_argument("--only", choices=("consumers", "jobs"),
                        help="only the Kafka consumers, or only the background jobs (default: both)")
    args = parser.parse_args(argv)
    services = tuple(args.service or SERVICES)
    name = args.name or default_name(services, args.only)
    settings = started(name)
    loops = []
    if args.only != "jobs":
        loops += [(c.name, c.run) for c in wiring.consumers(settings, services)]
    if args.only != "consumers":
        loops += [(getattr(j, "__name__", repr(j)), j) for j in wiring.jobs(settings, services)]
    if not loops:
        return 0
    checks = [(f"database:{s}", database_check(service_engine(settings, s)))
              for s in services if s in wiring.services_with_background()]
    if args.only != "jobs" or set(wiring.JOBS_USE_KAFKA) & set(services):
        checks.append(("kafka", kafka_check(settings.kafka_bootstrap)))
    if args.only != "consumers" and set(wiring.JOBS_USE_TEMPORAL) & set(services):
        checks.append(("temporal", temporal_check(settings.temporal_address, settings.temporal_namespace)))
    return run_loops(loops, heartbeat=heartbeat_of(settings, name), checks=checks, settings=settings)


def default_name(services: tuple[str, ...], only: str | None) -> str:
    prefix = "jobs" if only == "jobs" else "consume"
    return f"{prefix}-{services[0]}" if len(services) == 1 else prefix
