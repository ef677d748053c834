"""`kezek relay`: publishes every service's outbox to Kafka, one thread each.

Run as many as you like: on PostgreSQL each relay claims the rows it
publishes (FOR UPDATE SKIP LOCKED) and never overtakes another relay on one
aggregate's events (kezek/relay.py). On SQLite (one machine) run one."""
from __future__ import annotations

import argparse

from kezek import connections, tracing, wiring
from kezek.commands.background import add_name_option, heartbeat_of, run_loops
from kezek.db import make_engine, make_session_factory
from kezek.health import database_check, kafka_check
from kezek.logging import configure_logging
from kezek.relay import OutboxRelay
from kezek.settings import SERVICES, Settings


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kezek relay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service", action="append", choices=SERVICES,
                   help="only this service's outbox (repeatable; default: every service's)")
    add_name_option(p, "relay")
    args = p.parse_args(argv)
    name = args.name or "relay"
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service=name)
    connections.configure(settings)
    tracing.configure(settings, name)
    loops, checks = [], []
    for service, outbox in wiring.outboxes(tuple(args.service or SERVICES)):
        engine = make_engine(settings.database_url_for(service))
        relay = OutboxRelay(make_session_factory(engine), outbox, settings.kafka_bootstrap,
                            settings.kafka_topic_prefix)
        loops.append((f"relay-{service}", relay.run))
        checks.append((f"database:{service}", database_check(engine)))
    checks.append(("kafka", kafka_check(settings.kafka_bootstrap)))
    return run_loops(loops, heartbeat=heartbeat_of(settings, name), checks=checks, settings=settings)
