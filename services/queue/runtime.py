"""Builds the queue's use cases from the settings (engines are made here, at
start-up, never at import)."""
from __future__ import annotations

from kezek.db import make_session_factory, service_engine
from kezek.settings import Settings
from services.queue.usecases import Queue


def build_queue(settings: Settings, **kwargs) -> Queue:
    engine = service_engine(settings, "queue")
    return Queue(make_session_factory(engine), country=settings.country, retention=settings.retention(), **kwargs)
