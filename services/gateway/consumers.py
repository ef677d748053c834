"""The gateway's Kafka consumers (`kezek consume` runs them): the queue's
position changes for the cabinet's chart, the voucher commission's
decisions for the cabinet, the counters of the cabinet's read model
(readmodel.py), and the closing (or a granted erasure) of an application
for the gateway's retention clock."""
from __future__ import annotations


def build_consumers(settings) -> list:
    from kezek.db import make_session_factory, service_engine
    from services.gateway import history, readmodel, retention, vouchers

    sessions = make_session_factory(service_engine(settings, "gateway"))
    return [history.make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            vouchers.make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            readmodel.make_consumer(sessions, settings.kafka_bootstrap, settings.kafka_topic_prefix),
            retention.make_consumer(retention.retention_job(sessions, settings.retention()),
                                    settings.kafka_bootstrap, settings.kafka_topic_prefix)]
