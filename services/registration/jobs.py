"""Registration's background loop (`kezek consume` runs it): scrub the
e-mail codes and activation links out of outbox rows the relay has sent."""
from __future__ import annotations

import threading

from kezek.logging import get_logger

log = get_logger(__name__)
SCRUB_EVERY_SECONDS = 30


def build_jobs(settings) -> list:
    from kezek.db import make_engine, make_session_factory
    from services.registration.address import ReferenceAddressRegistry
    from services.registration.service import RegistrationService

    service = RegistrationService(make_session_factory(make_engine(settings.database_url_for("registration"))),
                                  ReferenceAddressRegistry(),
                                  code_key=settings.secret_key.get_secret_value().encode(), country=settings.country)

    def scrub_loop(stop: threading.Event) -> None:
        while not stop.wait(SCRUB_EVERY_SECONDS):
            try:
                if n := service.scrub_sent_secrets():
                    log.info("registration.secrets_scrubbed", rows=n)
            except Exception as exc:   # the database may be restarting: try again later
                log.warning("registration.scrub_failed", error=repr(exc))

    scrub_loop.__name__ = "registration-scrub"
    return [scrub_loop]
