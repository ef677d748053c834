"""Events on Kafka by the CloudEvents Kafka protocol binding 1.0.

Kezek writes the structured content mode: the record's value is the whole
envelope as JSON (what the outbox holds, sent as it is) and its
`content-type` header says so, `application/cloudevents+json;
charset=UTF-8`; the key is the envelope's `subject`. A reader also
understands the binary mode that other producers may use (the attributes in
`ce_*` headers, `content-type` the data's own type, the value the data
alone), through the `cloudevents` SDK, and a record with no header at all
(written before the headers were), which is the structured JSON.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pydantic_core
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from kezek.events import Event

__all__ = ["CONTENT_TYPE", "HEADERS", "RecordUnreadable", "event_of", "headers_of", "type_of"]

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
# What every record Kezek sends carries (kafka-python's form: name, bytes).
HEADERS: list[tuple[str, bytes]] = [("content-type", CONTENT_TYPE.encode())]
_STRUCTURED = "application/cloudevents+json"
_FIELDS = frozenset(Event.model_fields) - {"data"}


class RecordUnreadable(ValueError):
    """Neither mode of the binding: an unknown content type without `ce_` headers."""


def headers_of(record_headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None) -> dict[str, bytes]:
    """A record's headers by lower-case name (kafka-python gives a list of pairs)."""
    pairs = record_headers.items() if isinstance(record_headers, Mapping) else (record_headers or ())
    return {name.lower(): value or b"" for name, value in pairs}


def type_of(value: bytes, record_headers=None) -> str | None:
    """The event type of a record, cheaply: a consumer skips the types it
    does not take without building (and validating) their envelopes. None
    when the record does not say it plainly; `event_of` then decides."""
    headers = headers_of(record_headers)
    if any(name.startswith(ce_kafka.CE_PREFIX) for name in headers):
        found = headers.get(f"{ce_kafka.CE_PREFIX}type")
        return found.decode("utf-8", "replace") if found else None
    _structured(headers)
    try:
        envelope = pydantic_core.from_json(value)
    except ValueError:
        return None
    found = envelope.get("type") if isinstance(envelope, dict) else None
    return found if isinstance(found, str) else None


def _structured(headers: dict[str, bytes]) -> None:
    content_type = headers.get("content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    if content_type not in ("", _STRUCTURED):
        raise RecordUnreadable(f"content-type {content_type!r} without ce_ headers is not a CloudEvent")


def event_of(value: bytes, record_headers=None, key: bytes | str | None = None) -> Event:
    """The envelope of one record, in either mode of the binding."""
    headers = headers_of(record_headers)
    if any(name.startswith(ce_kafka.CE_PREFIX) for name in headers):
        message = ce_kafka.KafkaMessage(headers=headers, key=key, value=value)
        event = ce_kafka.from_binary(message, JSONFormat())
        attributes = {k: v for k, v in event.get_attributes().items() if k in _FIELDS}
        return Event.model_validate({**attributes, "data": event.get_data()})
    _structured(headers)
    return Event.from_json(value)
