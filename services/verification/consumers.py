"""The facts the worklist is built from: applications (registration) and
referrals (queue), consumed idempotently into this service's read model."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.settings import Settings
from services.verification.bootstrap import build_ingest, database
from services.verification.models import outbox
from services.verification.readmodel.ingest import APPLICATION_EVENTS, REFERRAL_EVENTS

CONSUMER = "verification.read_model"


def build_consumers(settings: Settings) -> list[IdempotentConsumer]:
    _engine, sessions = database(settings)
    return [IdempotentConsumer(
        name=CONSUMER, topics=[settings.topic("application"), settings.topic("referral")],
        bootstrap=settings.kafka_bootstrap, sessions=sessions, outbox=outbox,
        handle=build_ingest(settings), types=[*APPLICATION_EVENTS, *REFERRAL_EVENTS],
    )]
