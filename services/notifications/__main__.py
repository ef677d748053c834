"""`python -m services.notifications`: the whole notifications service in one
process (its API, Kafka consumer, one dispatcher per channel and its outbox
relay), for running it alone and for the integration tests that kill it.
`make run` runs the same parts through `kezek serve`, `consume` and `relay`."""
from __future__ import annotations

import argparse
import logging
import sys
import threading

import uvicorn

from kezek.infra.kafka import ensure_topics
from kezek import connections
from kezek.logging import configure_logging, get_logger
from kezek.migrations import upgrade
from kezek.relay import OutboxRelay
from kezek.retention import daily_loop
from kezek.settings import Settings
from services.notifications.api import create_app
from services.notifications.consumers import make_consumer, topics
from services.notifications.models import outbox
from services.notifications.retention import retention_job
from services.notifications.runtime import NotificationSettings, build_dispatchers, build_service

log = get_logger("services.notifications")


def consume_forever(service, settings: Settings, stop: threading.Event) -> None:
    # The broker may not be up yet (or restarting): keep trying to join.
    while not stop.is_set():
        try:
            ensure_topics(settings.kafka_bootstrap, topics(settings.kafka_topic_prefix))
            consumer = make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix,
                                     retention=retention_job(service.sessions, settings.retention()))
        except Exception as exc:
            log.warning("notifications.consumer_start_failed", error=repr(exc))
            stop.wait(1)
            continue
        consumer.run(stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.notifications", description=__doc__)
    p.add_argument("--migrate", action="store_true", help="upgrade the database first")
    p.add_argument("--port", type=int, help="default: KEZEK_NOTIFICATIONS_PORT")
    args = p.parse_args(argv)
    settings, extra = Settings(), NotificationSettings()
    configure_logging(settings.log_level, settings.log_json, service="notifications")
    connections.configure(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per SMS sent is noise
    if args.migrate:
        upgrade("notifications", extra.database_url or settings.database_url_for("notifications"), settings=settings)
    service = build_service(settings, extra)
    stop = threading.Event()
    relay = OutboxRelay(service.sessions, outbox, settings.kafka_bootstrap, settings.kafka_topic_prefix)
    loops = [("notifications-consumer", lambda s: consume_forever(service, settings, s)),
             ("notifications-relay", relay.run)]
    loops += [(d.__name__, d) for d in build_dispatchers(settings, extra)]
    loops.append(("notifications-retention", daily_loop(retention_job(service.sessions, settings.retention()))))
    threads = [threading.Thread(target=fn, args=(stop,), name=name, daemon=True) for name, fn in loops]
    for t in threads:
        t.start()
    try:
        uvicorn.run(create_app(settings, service, extra), host=settings.host, port=args.port or settings.notifications_port,
                    log_config=None, access_log=False, timeout_graceful_shutdown=5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
