"""Events on Kafka by the CloudEvents Kafka binding (kezek/events/binding.py),
read by Kezek's consumers and by the copyable example subscriber; the
envelope's dataschema."""
from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from kezek.events import binding, new_event
from kezek.settings import Settings
from services.gateway.public.config import public_settings

ROOT = Path(__file__).resolve().parents[2]


def example_subscriber():
    spec = importlib.util.spec_from_file_location("subscriber", ROOT / "examples" / "subscriber.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def published() -> dict:
    return {"kindergarten_id": "kg-1", "district": "41711100000000", "cohort": 2021, "language": "ky", "count": 5}


def test_every_record_says_it_is_a_structured_cloudevent():
    assert binding.HEADERS == [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def test_a_structured_record_is_read_whole_and_one_without_headers_as_before():
    event = new_event("public.place.published.v1", "kg-1", published(), source="gateway")
    raw = event.to_json().encode()
    assert binding.event_of(raw, binding.HEADERS) == event
    assert binding.event_of(raw, None) == event                 # written before the headers were


def test_a_binary_record_of_another_producer_is_read_from_its_ce_headers():
    sdk_event = CloudEvent(attributes={
        "id": "e-1", "source": "/kezek/elsewhere", "type": "public.place.published.v1", "subject": "kg-1",
        "time": datetime(2027, 3, 1, 6, tzinfo=UTC), "datacontenttype": "application/json",
        "dataschema": "https://portal.example/api/v1/public/schemas/public.place.published.v1.json",
    }, data=published())
    message = ce_kafka.to_binary(sdk_event, JSONFormat())
    assert "ce_type" in message.headers and message.headers["content-type"] == b"application/json"
    event = binding.event_of(message.value, list(message.headers.items()), key=b"kg-1")
    assert (event.id, event.type, event.subject, event.source) == ("e-1", "public.place.published.v1", "kg-1",
                                                                    "/kezek/elsewhere")
    assert event.time == datetime(2027, 3, 1, 6, tzinfo=UTC) and event.data == published()
    assert event.dataschema.endswith("/public.place.published.v1.json")


def test_a_record_of_another_content_type_is_not_taken_for_an_event():
    with pytest.raises(binding.RecordUnreadable):
        binding.event_of(b"<xml/>", [("content-type", b"application/xml")])


def test_the_example_subscriber_reads_both_modes_of_the_binding_alike():
    subscriber = example_subscriber()
    event = new_event("public.place.published.v1", "kg-1", published(), source="gateway")
    structured = subscriber.envelope(event.to_json().encode(), binding.HEADERS)
    sdk_event = CloudEvent(attributes={k: v for k, v in event.model_dump().items() if k != "data" and v is not None},
                           data=event.data)
    message = ce_kafka.to_binary(sdk_event, JSONFormat())
    binary = subscriber.envelope(message.value, list(message.headers.items()))
    for name in ("id", "type", "subject", "source", "data"):
        assert structured[name] == binary[name] == json.loads(event.to_json())[name]
    with pytest.raises(ValueError):
        subscriber.envelope(b"{}", [("content-type", b"text/plain")])


def test_an_internal_event_names_its_schema_in_the_repository_not_a_placeholder_host():
    event = new_event("public.place.published.v1", "kg-1", published(), source="queue")
    assert event.dataschema == "urn:kezek:event-schema:public.place.published.v1"


def test_a_public_event_points_at_the_schema_the_gateway_serves_under_the_public_url():
    settings = public_settings(Settings(public_url="https://balalyk.example.kg/"))
    assert settings.event_schema_base == "https://balalyk.example.kg/api/v1/public/schemas"
    event = new_event("public.place.published.v1", "kg-1", published(), source="public",
                      schema_base=settings.event_schema_base)
    assert event.dataschema == "https://balalyk.example.kg/api/v1/public/schemas/public.place.published.v1.json"
    elsewhere = public_settings(None).model_copy(update={"event_schema_url": "https://schemas.example.kg/kezek"})
    assert elsewhere.event_schema_base == "https://schemas.example.kg/kezek"
