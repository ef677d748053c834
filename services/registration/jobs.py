"""Registration's background loop (`kezek consume` runs it): scrub the
e-mail codes and activation links out of outbox rows the relay has sent,
and forget wrong passwords and code sends older than a day."""
from __future__ import annotations

import threading

from kezek.logging import get_logger

log = get_logger(__name__)
SCRUB_EVERY_SECONDS = 30


def build_jobs(settings) -> list:
    from services.registration.bootstrap import build

    service = build(settings)

    def scrub_loop(stop: threading.Event) -> None:
        while not stop.wait(SCRUB_EVERY_SECONDS):
            try:
                if n := service.scrub_sent_secrets():
                    log.info("registration.secrets_scrubbed", rows=n)
                if n := service.forget_old_counts():
                    log.info("registration.old_counts_forgotten", rows=n)
            except Exception as exc:   # the database may be restarting: try again later
                log.warning("registration.scrub_failed", error=repr(exc))

    scrub_loop.__name__ = "registration-scrub"
    from kezek.retention import daily_loop
    from services.registration.retention import retention_job

    return [scrub_loop, daily_loop(retention_job(service.sessions, settings.retention()))]
