"""`kezek relay`: publishes every service's outbox to Kafka, one thread each."""
from __future__ import annotations

import argparse

from kezek import connections, wiring
from kezek.commands.background import run_loops
from kezek.db import make_engine, make_session_factory
from kezek.logging import configure_logging
from kezek.relay import OutboxRelay
from kezek.settings import Settings


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="kezek relay", description=__doc__).parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json, service="relay")
    connections.configure(settings)
    loops = []
    for service, outbox in wiring.outboxes():
        sessions = make_session_factory(make_engine(settings.database_url_for(service)))
        relay = OutboxRelay(sessions, outbox, settings.kafka_bootstrap, settings.kafka_topic_prefix)
        loops.append((f"relay-{service}", relay.run))
    return run_loops(loops)
