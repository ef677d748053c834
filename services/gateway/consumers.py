"""The gateway's Kafka consumers (`kezek consume` runs them): the queue's
position changes for the cabinet's chart, the voucher commission's
decisions for the cabinet."""
from __future__ import annotations


def build_consumers(settings) -> list:
    from kezek.db import make_engine, make_session_factory
    from services.gateway import history, vouchers

    sessions = make_session_factory(make_engine(settings.database_url_for("gateway")))
    return [history.make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            vouchers.make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix)]
