"""The facts the worklist is built from: applications (registration) and
referrals (queue), consumed idempotently into this service's read model."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.db import make_engine, make_session_factory
from kezek.settings import Settings
from services.verification.bootstrap import build_ingest
from services.verification.models import outbox
from services.verification.readmodel.ingest import APPLICATION_EVENTS, REFERRAL_EVENTS
from services.verification.settings import as_settings

CONSUMER = "verification.read_model"


def build_consumers(settings: Settings) -> list[IdempotentConsumer]:
    vsettings = as_settings(settings)
    sessions = make_session_factory(make_engine(vsettings.database_url_for("verification")))
    return [IdempotentConsumer(
        name=CONSUMER, topics=[settings.topic("application"), settings.topic("referral")],
        bootstrap=settings.kafka_bootstrap, sessions=sessions, outbox=outbox,
        handle=build_ingest(vsettings), types=[*APPLICATION_EVENTS, *REFERRAL_EVENTS],
    )]
