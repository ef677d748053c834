"""Builds the queue service from the settings (engines are made here, at
start-up, never at import)."""
from __future__ import annotations

from kezek.db import make_engine, make_session_factory
from kezek.settings import Settings
from services.queue.service import QueueService


def build_service(settings: Settings, **kwargs) -> QueueService:
    engine = make_engine(settings.database_url_for("queue"))
    return QueueService(make_session_factory(engine), country=settings.country, **kwargs)
