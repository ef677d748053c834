"""The facts the worklist is built from: applications (registration) and
referrals (queue), consumed idempotently into this service's read model;
and the closing of an application, which starts verification's own
retention clock (kezek/retention.py), or a family's granted erasure, which
anonymises verification's data of it at once."""
from __future__ import annotations

from kezek.consumer import IdempotentConsumer
from kezek.retention import CLOSED, ERASURE_GRANTED, with_retention
from kezek.settings import Settings
from services.verification.bootstrap import build_ingest, database, scan_files
from services.verification.models import outbox
from services.verification.readmodel.ingest import APPLICATION_EVENTS, REFERRAL_EVENTS
from services.verification.retention import retention_job

CONSUMER = "verification.read_model"


def build_consumers(settings: Settings) -> list[IdempotentConsumer]:
    _engine, sessions = database(settings)
    return [IdempotentConsumer(
        name=CONSUMER, topics=[settings.topic("application"), settings.topic("referral")],
        bootstrap=settings.kafka_bootstrap, sessions=sessions, outbox=outbox,
        handle=with_retention(build_ingest(settings), retention_job(sessions, scan_files(settings), settings.retention())),
        types=[*APPLICATION_EVENTS, *REFERRAL_EVENTS, CLOSED, ERASURE_GRANTED],
    )]
