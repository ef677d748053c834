"""How this process reaches Kafka and Temporal beyond their addresses: TLS,
SASL and API keys (and, for Temporal, the tracing interceptor). Set once at start-up from the settings (`configure`,
beside `configure_logging`), read by every client factory, so that no
producer, consumer, admin client or Temporal client is left in plain text
when the deployment asks for more."""
from __future__ import annotations

from typing import Any

_kafka: dict[str, Any] = {}
_temporal: dict[str, Any] = {}


def configure(settings) -> None:
    _kafka.clear()
    _kafka.update(settings.kafka_client_options())
    _temporal.clear()
    _temporal.update(settings.temporal_connect_options())


def kafka(**overrides: Any) -> dict[str, Any]:
    """Options for a kafka-python client (`KafkaProducer(**connections.kafka(...))`)."""
    return {**_kafka, **overrides}


def temporal(**overrides: Any) -> dict[str, Any]:
    """Options for `temporalio.client.Client.connect`, with the tracing
    interceptor (kezek.tracing) that every client and worker carries."""
    from kezek.tracing import temporal_interceptors

    return {**_temporal, "interceptors": temporal_interceptors(), **overrides}
