"""The event envelope and the schema registry.

Every event is a CloudEvents 1.0 envelope (`id`, `source`, `type`, `time`,
`subject`, `data`, ...). `type` carries its version (`referral.issued.v1`);
its first word is the aggregate, which names the Kafka topic
(`kezek.referral`), and `subject` (the aggregate id) is the message key, so
the events of one aggregate stay in order. Each type has a JSON Schema in
`schemas/<type>.json`; an event whose data does not match is never written.

`dataschema` says where a reader finds that schema: for the public stream's
events the gateway's URL (`<KEZEK_EVENT_SCHEMA_URL>/<type>.json`, by default
the portal's `/api/v1/public/schemas`), for internal events a name in this
repository (`urn:kezek:event-schema:<type>`), which nothing outside fetches.
On Kafka, records follow the CloudEvents Kafka binding (`binding.py`).
"""
from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, Field

SCHEMA_DIR = Path(__file__).parent / "schemas"


class UnknownEventType(ValueError):
    pass


class InvalidEvent(ValueError):
    pass


class Event(BaseModel):
    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    time: datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: dict[str, Any]
    # CloudEvents' distributed-tracing extension (W3C Trace Context): the
    # trace of the act that wrote the event, continued by its consumers
    # (kezek.tracing). Absent outside a trace.
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def aggregate(self) -> str:
        return aggregate_of(self.type)

    def to_json(self) -> str:
        # Extension attributes appear only when set: an envelope without a
        # trace is byte for byte what it was before they existed.
        unset = {k for k in _EXTENSIONS if getattr(self, k) is None}
        return self.model_dump_json(exclude=unset or None)

    @property
    def trace(self) -> dict[str, str | None]:
        return {"traceparent": self.traceparent, "tracestate": self.tracestate}

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Event":
        return cls.model_validate_json(raw)


_EXTENSIONS = ("traceparent", "tracestate")


def aggregate_of(event_type: str) -> str:
    return event_type.split(".", 1)[0]


@functools.cache
def schema_for(event_type: str) -> dict:
    path = SCHEMA_DIR / f"{event_type}.json"
    if not path.is_file():
        raise UnknownEventType(f"no schema for event type {event_type!r} in {SCHEMA_DIR}")
    return json.loads(path.read_text())


# Fields that name or reach a person. An event type whose schema has any of
# them carries personal data: its outbox row is sealed at rest (kezek/outbox.py).
PERSONAL_FIELDS = frozenset({"child_pin", "child_surname", "child_name", "child_patronymic", "parent_pin",
                             "document_number", "email", "phone", "sealed"})


@functools.cache
def carries_personal_data(event_type: str) -> bool:
    return bool(PERSONAL_FIELDS & set(schema_for(event_type).get("properties", {})))


def known_types() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json") if p.stem != "envelope")


def aggregates() -> list[str]:
    return sorted({aggregate_of(t) for t in known_types()})


@functools.cache
def _validator(event_type: str) -> jsonschema.protocols.Validator:
    # Checking the schema itself once per type, not once per event (it
    # costs ~50 ms, which every outbox write and consumer would pay).
    schema = schema_for(event_type)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(event: Event) -> None:
    try:
        _validator(event.type).validate(event.data)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidEvent(f"{event.type}: data at {where}: {exc.message}") from exc


@functools.cache
def _compiled(event_type: str):
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema_for(event_type))


def validate_data(event_type: str, data: dict[str, Any]) -> None:
    """`validate`, cheaper: a compiled validator (about 1 µs, not 85) passes
    the valid data; what it doubts, or cannot read, goes to the reference
    validator, which decides and words the refusal exactly as `validate`
    does."""
    try:
        valid = _compiled(event_type).is_valid(data)
    except Exception:           # a value that is not JSON's: the reference decides
        valid = False
    if not valid:
        validate(Event(source="-", type=event_type, time=datetime.now(UTC), subject="-", data=data))


def dataschema_for(event_type: str, schema_base: str | None = None) -> str:
    """Where the schema of `event_type` is: `<schema_base>/<type>.json`, or
    the repository's name for it when there is no base."""
    if schema_base:
        return f"{schema_base.rstrip('/')}/{event_type}.json"
    return f"urn:kezek:event-schema:{event_type}"


def new_event(event_type: str, subject: str, data: dict[str, Any], *, source: str,
              time: datetime | None = None, event_id: str | None = None, schema_base: str | None = None,
              trace: dict[str, str] | None = None) -> Event:
    event = Event(
        id=event_id or str(uuid.uuid4()),
        source=f"/kezek/{source}",
        type=event_type,
        time=time or datetime.now(UTC),
        subject=subject,
        dataschema=dataschema_for(event_type, schema_base),
        data=data,
        **(trace or {}),
    )
    # Every event of every outbox is built here (the notifications consumer
    # builds three notification.queued facts a referral): the compiled check
    # took a quarter of its CPU per referral fact off (the reference
    # validator, about 1 ms an event).
    validate_data(event_type, event.data)
    return event
