"""What registration hears from the queue: an application removed or
refused there stops holding its child's PIN here."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.db import make_engine, make_session_factory
from services.registration.models import outbox

CONSUMER_NAME = "registration"
CONSUMED_TYPES = ("application.removed.v1", "application.refused.v1")


def make_consumer(service, bootstrap: str, prefix: str = "kezek", **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.application"], bootstrap=bootstrap,
                              sessions=service.sessions, outbox=outbox, handle=service.handle_queue_event,
                              types=CONSUMED_TYPES, **kafka_config)


def build_consumers(settings) -> list[IdempotentConsumer]:
    from services.registration.address import ReferenceAddressRegistry
    from services.registration.service import RegistrationService

    sessions = make_session_factory(make_engine(settings.database_url_for("registration")))
    service = RegistrationService(sessions, ReferenceAddressRegistry(),
                                  code_key=settings.secret_key.get_secret_value().encode(), country=settings.country)
    return [make_consumer(service, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
