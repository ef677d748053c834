"""What the public stream's background loops share: settings, the gateway
database, the projector. Built at start-up (build_jobs), never at import."""
from __future__ import annotations

import threading

from kezek.db import make_session_factory, service_engine
from kezek.settings import Settings
from kezek.trust import ServiceKeys
from services.gateway.public.config import public_settings
from services.gateway.public.projector import (
    INTERNAL_AGGREGATES, Projector, PublicRelay, queue_directory, run_projector,
)


class PublicRuntime:
    def __init__(self, settings: Settings, *, database_url: str | None = None):
        self.settings = public_settings(settings)
        self.engine = service_engine(self.settings, "gateway", url=database_url)
        self.sessions = make_session_factory(self.engine)
        self.projector = Projector(self.settings.pseudonym_key.get_secret_value().encode(), self.settings.country,
                                   directory=queue_directory(self.settings.url_of("queue"),
                                                             ServiceKeys.from_settings(self.settings)),
                                   schema_base=self.settings.event_schema_base)
        # The webhooks' ingest tells the delivery loop of this process that it queued deliveries.
        self.deliveries_queued = threading.Event()

    @property
    def internal_topics(self) -> list[str]:
        return [self.settings.topic(a) for a in INTERNAL_AGGREGATES]

    def relay(self) -> PublicRelay:
        return PublicRelay(self.sessions, self.settings.kafka_bootstrap, self.settings.public_topic)

    def dispatcher(self):
        from services.gateway.public.webhooks import Dispatcher
        return Dispatcher(self.sessions, self.settings, self.deliveries_queued)

    # The loops `kezek consume` runs, one thread each.

    def projector_loop(self, stop: threading.Event) -> None:
        run_projector(stop, self.sessions, self.projector, self.settings.kafka_bootstrap, self.internal_topics)

    def public_relay_loop(self, stop: threading.Event) -> None:
        self.relay().run(stop)

    def webhook_ingest_loop(self, stop: threading.Event) -> None:
        self.dispatcher().run_ingest(stop)

    def webhook_delivery_loop(self, stop: threading.Event) -> None:
        self.dispatcher().run_delivery(stop)
