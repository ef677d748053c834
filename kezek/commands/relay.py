"""`kezek relay`: publishes every service's outbox to Kafka, one thread each.

Run as many as you like: on PostgreSQL each relay claims the rows it
publishes (FOR UPDATE SKIP LOCKED) and never overtakes another relay on one
aggregate's events (kezek/relay.py). On SQLite (one machine) run one."""
from __future__ import annotations

from kezek import wiring
from kezek.commands.background import heartbeat_of, run_loops, services_parser, started
from kezek.db import make_session_factory, service_engine
from kezek.health import database_check, kafka_check
from kezek.relay import OutboxRelay
from kezek.settings import SERVICES


def main(argv: list[str]) -> int:
    args = services_parser("kezek relay", __doc__, "outbox", "relay").parse_args(argv)
    name = args.name or "relay"
    settings = started(name)
    loops, checks = [], []
    for service, outbox in wiring.outboxes(tuple(args.service or SERVICES)):
        engine = service_engine(settings, service)
        relay = OutboxRelay(make_session_factory(engine), outbox, settings.kafka_bootstrap,
                            settings.kafka_topic_prefix)
        loops.append((f"relay-{service}", relay.run))
        checks.append((f"database:{service}", database_check(engine)))
    checks.append(("kafka", kafka_check(settings.kafka_bootstrap)))
    return run_loops(loops, heartbeat=heartbeat_of(settings, name), checks=checks, settings=settings)
