"""The gateway's Kafka consumers (`kezek consume` runs them)."""
from __future__ import annotations


def build_consumers(settings) -> list:
    from kezek.db import make_engine, make_session_factory
    from services.gateway.history import make_consumer

    sessions = make_session_factory(make_engine(settings.database_url_for("gateway")))
    return [make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
