"""The event catalogue: every event type Kezek writes, as a page a person
reads (`/events` on the portal, linked from its footer), rendered from the
JSON Schemas (kezek/events/schemas) and the public contract (the AsyncAPI
document of kezek.public.v1, contract.py).

For each type: what it means, the topic it travels on (the public stream
for outside systems, or an internal topic of one aggregate), its fields
with their types, whether each is required and what it means, and an example
envelope that the schema accepts. The meanings are short sentences in
English here (gettext msgids, translated in the portal's catalogs); the
schemas' own descriptions, longer and technical, stay in the AsyncAPI
document. A type or a field without a meaning here fails the tests, so a new
event cannot reach the contract unexplained."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from kezek.events import aggregate_of, known_types, schema_for
from services.gateway.messages import N_
from services.gateway.public.projection import public_types

PUBLIC_TOPIC = "kezek.public.v1"

EVENTS: dict[str, str] = {
    "account.activation_issued.v1": N_("A one-time link to set the password of a parent's cabinet was issued."),
    "account.sign_in_failed.v1": N_("Wrong passwords were given for a parent's account; the owner is told."),
    "application.aged_out.v1": N_("A waiting child reached school age and left the queue."),
    "application.erasure_granted.v1": N_("The family's erasure request was granted: every service anonymises "
                                         "the application's data now."),
    "application.closed.v1": N_("An application's life in the queue ended; the retention clock starts."),
    "application.left.v1": N_("An enrolled child left the kindergarten; the application is closed."),
    "application.paused.v1": N_("After an expired direction the child is on the stop-list for a while."),
    "application.position_changed.v1": N_("A queued child's position in the queue changed."),
    "application.queued.v1": N_("The child joined the queue with its queue date."),
    "application.received.v1": N_("An application was accepted; carries the parent's contacts for notifications."),
    "application.refused.v1": N_("The queue refused an application (for example, the child is already in it)."),
    "application.removed.v1": N_("The child was removed from the queue."),
    "application.resumed.v1": N_("The stop-list ended: the child is back in the queue with its queue date."),
    "application.returned_to_general_queue.v1": N_("The privilege is gone: the child is ranked in the general "
                                                   "queue by its original queue date."),
    "application.submitted.v1": N_("A parent submitted an application; the queue creates the child's entry."),
    "backbone.probe.v1": N_("An operator's test of the event pipeline; no personal data."),
    "notification.delivered.v1": N_("A message reached the parent."),
    "notification.failed.v1": N_("A message was given up."),
    "notification.queued.v1": N_("A message to a parent was created."),
    "notification.sent.v1": N_("The mail server or SMS gateway accepted a message."),
    "place.freed.v1": N_("A taken place became free again: the child left the kindergarten."),
    "place.published.v1": N_("Free places were published in a kindergarten."),
    "place.returned.v1": N_("A held place went back to the register of free places."),
    "place.withdrawn.v1": N_("Free places were withdrawn from the register."),
    "public.application.aged_out.v1": N_("A waiting child reached school age and left the queue."),
    "public.application.left.v1": N_("An enrolled child left the kindergarten."),
    "public.application.paused.v1": N_("After an expired direction the child is on the stop-list for a while."),
    "public.application.position_changed.v1": N_("A queued child's position in the queue changed."),
    "public.application.queued.v1": N_("A child joined the queue."),
    "public.application.removed.v1": N_("The child was removed from the queue."),
    "public.application.resumed.v1": N_("The stop-list ended: the child is back in the queue with its queue date."),
    "public.application.returned_to_general_queue.v1": N_("The privilege is gone: the child is ranked in the "
                                                          "general queue by its original queue date."),
    "public.place.freed.v1": N_("A taken place became free again: the child left the kindergarten."),
    "public.place.published.v1": N_("Free places were published in a kindergarten."),
    "public.place.returned.v1": N_("A held place went back to the register of free places."),
    "public.place.withdrawn.v1": N_("Free places were withdrawn from the register."),
    "public.referral.cancelled.v1": N_("The parent cancelled the direction; the child stays in the queue."),
    "public.referral.certificate_requested.v1": N_("The certificate was out of date: a fresh one is requested."),
    "public.referral.enrolled.v1": N_("The kindergarten enrolled the child: the place is taken."),
    "public.referral.expired.v1": N_("The deadline passed with nothing done: the place goes back to the register."),
    "public.referral.extended.v1": N_("The one extension of the direction was granted."),
    "public.referral.imported.v1": N_("A live direction moved from the previous system now runs in Kezek."),
    "public.referral.issued.v1": N_("A place is held for a child: a direction was issued."),
    "public.referral.privilege_confirmed.v1": N_("A caseworker confirmed the privilege."),
    "public.referral.privilege_rejected.v1": N_("The privilege was not confirmed: the direction ends."),
    "referral.cancelled.v1": N_("The parent cancelled the direction; the child stays in the queue."),
    "referral.certificate_requested.v1": N_("The certificate was out of date: a fresh one is requested."),
    "referral.deadline_approaching.v1": N_("A direction's deadline is near."),
    "referral.enrolled.v1": N_("The kindergarten enrolled the child: the place is taken."),
    "referral.expired.v1": N_("The deadline passed with nothing done: the place goes back to the register."),
    "referral.extended.v1": N_("The one extension of the direction was granted."),
    "referral.imported.v1": N_("A live direction moved from the previous system now runs in Kezek."),
    "referral.issued.v1": N_("A place is held for a child: a direction was issued."),
    "referral.privilege_confirmed.v1": N_("A caseworker confirmed the privilege."),
    "referral.privilege_rejected.v1": N_("The privilege was not confirmed: the direction ends."),
    "registration.email_code_issued.v1": N_("A code to confirm a parent's e-mail was issued."),
    "verification.abuse_flagged.v1": N_("A child's directions look like abuse of a privilege; a case was opened."),
    "verification.certificate_recorded.v1": N_("A caseworker recorded the certificate from the place of work."),
    "verification.decision_recorded.v1": N_("A caseworker's decision on a privilege was accepted."),
    "verification.privilege_revoked.v1": N_("A supervisor found a privilege false and revoked it."),
    "verification.voucher_decided.v1": N_("The district commission decided a voucher application."),
}

FIELDS: dict[str, str] = {
    "action": N_("what the caseworker did"),
    "activation_url": N_("the activation link (old events only; now sealed)"),
    "aged_out": N_("true when the child has reached school age and leaves the queue"),
    "aged_out_at": N_("when the child left the queue"),
    "application_id": N_("the application's id"),
    "applications": N_("how many applications"),
    "at": N_("when it happened"),
    "attempts": N_("how many times sending was tried"),
    "benefit_type": N_("full or partial financing"),
    "case_id": N_("the case's id at the verification service"),
    "category": N_("the queue category: general, a privilege category or extraordinary"),
    "certificate_id": N_("the certificate's id"),
    "channel": N_("sms, email or inapp"),
    "child_birth_date": N_("the child's date of birth"),
    "child_name": N_("the child's name"),
    "child_patronymic": N_("the child's patronymic"),
    "child_pin": N_("the child's personal number"),
    "child_ref": N_("pseudonymous child id: a keyed hash, stable for the child"),
    "child_sex": N_("the child's sex, from the personal number"),
    "child_surname": N_("the child's surname"),
    "closed_at": N_("when the application closed"),
    "code": N_("the e-mail code (old events only; now sealed)"),
    "cohort": N_("birth year: places are distributed by it"),
    "confirmed_at": N_("when the privilege was confirmed"),
    "count": N_("how many places"),
    "country": N_("KG or KZ"),
    "cycles": N_("how many times the pattern repeated"),
    "deadline": N_("when the window now running ends"),
    "decided_at": N_("when it was decided"),
    "decided_by": N_("who decided"),
    "decision": N_("approved or rejected"),
    "decision_id": N_("the decision's id"),
    "decision_number": N_("the number of the commission's decision"),
    "district": N_("territory code of the district"),
    "email": N_("the parent's e-mail"),
    "encoding": N_("the SMS encoding"),
    "expires_at": N_("when it stops being valid"),
    "extended": N_("whether the one extension was used"),
    "external_id": N_("the id in the previous system"),
    "failures": N_("how many wrong attempts"),
    "field": N_("the field that was refused"),
    "for_category": N_("only this category may take the places"),
    "free": N_("free places of the pool afterwards"),
    "from_category": N_("the category before the change"),
    "granted_at": N_("when it was granted"),
    "imported": N_("moved from the previous system"),
    "in_date": N_("whether the certificate was in date"),
    "issued_at": N_("when it was issued"),
    "issued_on": N_("the day the certificate was issued"),
    "kind": N_("what the message is about"),
    "kindergarten_address": N_("the kindergarten's address"),
    "kindergarten_id": N_("kindergarten id in the register"),
    "kindergarten_name": N_("the kindergarten's name"),
    "language": N_("language of instruction"),
    "lat": N_("latitude of the address"),
    "left_at": N_("when the child left"),
    "locale": N_("the language of the message"),
    "lon": N_("longitude of the address"),
    "message_id": N_("the message's id"),
    "needs_confirmation": N_("whether the privilege must be confirmed by a caseworker"),
    "note": N_("free text of the operator"),
    "office_address": N_("where the privilege is confirmed"),
    "outcome": N_("how it ended"),
    "params": N_("parameters of the refusal's message"),
    "parent_id": N_("the parent's account id"),
    "phone": N_("the parent's phone"),
    "position": N_("the position in the queue, from 1"),
    "preferences": N_("the chosen kindergartens, best first"),
    "previous_position": N_("the position before"),
    "probe_id": N_("the probe's id"),
    "queue_date": N_("the queue date, kept forever"),
    "queued_on": N_("the day the child joined the queue"),
    "reason": N_("why"),
    "recorded_by": N_("who recorded it"),
    "referral_id": N_("the direction's id"),
    "referral_ids": N_("the directions concerned"),
    "referral_ref": N_("pseudonymous direction id"),
    "referral_rejected": N_("whether the direction was already ended"),
    "region": N_("territory code of the region"),
    "release_at": N_("when the message may be sent"),
    "result_event": N_("the fact the decision produced"),
    "revoked_at": N_("when the privilege was revoked"),
    "revoked_by": N_("who revoked it"),
    "rule": N_("the rule that matched"),
    "scan_sha256": N_("SHA-256 of the scan"),
    "school_age_years": N_("school age in years (policy)"),
    "sealed": N_("fields sealed for the notifications service"),
    "segments": N_("how many SMS segments"),
    "source_event_id": N_("the event the message was made for"),
    "source_event_type": N_("that event's type"),
    "state": N_("the direction's state after the change"),
    "stoplist_until": N_("when the stop-list ends"),
    "to_category": N_("the category after the change"),
    "until": N_("until when"),
    "valid_until": N_("the last day the certificate is valid"),
    "window": N_("which window: confirmation or enrolment"),
    "working_days_left": N_("working days left before the deadline"),
}

# Sample values an example envelope uses, by field name (else by type).
SAMPLES: dict[str, Any] = {
    "application_id": "a-7f3c", "referral_id": "r-1042", "parent_id": "p-51", "kindergarten_id": "bishkek-12",
    "kindergarten_name": "Ясли-сад № 12 «Балажан»", "kindergarten_address": "ул. Токтогула, 125",
    "office_address": "ул. Абдрахманова, 170", "district": "41711210000000", "region": "41711000000000",
    "child_ref": "3f2a9c1e5b7d4a608e1f2c3b4a5d6e7f", "referral_ref": "9c1e5b7d4a608e1f2c3b4a5d6e7f3f2a",
    "cohort": 2023, "category": "general", "from_category": "extraordinary", "to_category": "general",
    "for_category": "extraordinary", "language": "ky", "locale": "ky", "country": "KG", "position": 12,
    "previous_position": 15, "count": 3, "free": 2, "child_pin": "21506202300011", "child_surname": "Асанов",
    "child_name": "Айбек", "child_patronymic": "Бакытович", "child_sex": "male", "child_birth_date": "2023-06-15",
    "email": "parent@example.kg", "phone": "+996555123456", "lat": 42.8746, "lon": 74.5698,
    "preferences": ["bishkek-12", "bishkek-37"], "channel": "sms", "kind": "referral_issued", "attempts": 1,
    "segments": 1, "encoding": "GSM7", "working_days_left": 2, "window": "enrolment", "state": "awaiting_enrolment",
    "school_age_years": 7, "decision": "approved", "benefit_type": "full", "decision_number": 17,
    "scan_sha256": "0" * 64, "probe_id": "probe-1", "note": "after maintenance", "outcome": "enrolled",
    "reason": "moved away", "result_event": "referral.privilege_confirmed.v1", "action": "confirm",
    "source_event_type": "referral.issued.v1", "rule": "repeated_cancellations", "cycles": 3,
    "referral_ids": ["r-1042", "r-1077"], "activation_url": "https://kezek.example.kg/activate?token=…",
    "code": "123456", "field": "child.pin", "external_id": "balalyk-4411",
}
MOMENT = "2027-03-01T10:00:00+06:00"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    meaning: str            # an msgid of FIELDS
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventType:
    type: str
    meaning: str            # an msgid of EVENTS
    topic: str
    public: bool
    fields: tuple[Field, ...]
    example: str            # an envelope, JSON, that the schema accepts
    schema_url: str | None
    details: str = ""       # the schema's own description (English)
    tags: tuple[str, ...] = field(default=())


def type_of(spec: dict) -> str:
    if "const" in spec:
        return json.dumps(spec["const"])
    kinds = spec.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    out = []
    for k in kinds:
        if k == "array":
            items = spec.get("items", {})
            out.append(f"array of {type_of(items)}" if items else "array")
        elif k == "string" and spec.get("format"):
            out.append(f"string ({spec['format']})")
        else:
            out.append(k)
    return " | ".join(out)


def sample(name: str, spec: dict) -> Any:
    if "const" in spec:
        return spec["const"]
    if spec.get("enum"):
        return next((v for v in spec["enum"] if v is not None), None)
    kinds = spec.get("type", "string")
    kind = next((k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"), "null")
    if spec.get("pattern") == "^[A-Za-z0-9_-]+$":          # a sealed value: base64url
        return "bm9uY2UtY2lwaGVydGV4dC10YWc"
    if name in SAMPLES and kind != "object":
        return SAMPLES[name]
    if kind == "string":
        fmt = spec.get("format")
        if fmt == "date-time" or name.endswith("_at") or name in ("deadline", "until", "stoplist_until"):
            return MOMENT
        if fmt == "date" or name.endswith("_on") or name.endswith("_date"):
            return MOMENT[:10]
        if name.endswith("_id") or name == "id":
            return f"{name[:-3] or 'id'}-1"
        return "…"
    if kind == "integer":
        return max(int(spec.get("minimum", 1)), 1)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return False
    if kind == "array":
        return [sample(name, spec.get("items", {}))] if spec.get("minItems") else []
    if kind == "object":
        props = spec.get("properties", {})
        return {k: sample(k, v) for k, v in props.items() if k in spec.get("required", [])}
    return None


def example_data(schema: dict) -> dict:
    """Every required field and the usual optional ones (those SAMPLES
    knows), with values the schema accepts."""
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    for choice in (schema.get("anyOf") or schema.get("oneOf") or [])[:1]:
        required |= set(choice.get("required", []))       # the first of the alternatives
    return {k: sample(k, v) for k, v in props.items()
            if k in required or (k in SAMPLES and k not in ("code", "activation_url"))}


def envelope(event_type: str, data: dict) -> dict:
    aggregate = aggregate_of(event_type)
    subject = data.get("child_ref") or data.get("referral_id") or data.get("application_id") \
        or data.get("kindergarten_id") or "subject-1"
    return {"specversion": "1.0", "id": "0b8e4c8a-2f6c-4f51-9d0e-5a7a1f2c3d4e",
            "source": f"/kezek/{'gateway' if aggregate == 'public' else aggregate}", "type": event_type,
            "time": MOMENT, "subject": str(subject), "datacontenttype": "application/json", "data": data}


def topic_of(event_type: str, prefix: str = "kezek") -> str:
    return PUBLIC_TOPIC if event_type in public_types() else f"{prefix}.{aggregate_of(event_type)}"


def catalogue(prefix: str = "kezek") -> list[EventType]:
    """Every event type, the public ones first, each group by name."""
    public = set(public_types())
    out = []
    for t in known_types():
        schema = schema_for(t)
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = tuple(Field(name, type_of(spec), name in required, FIELDS.get(name, ""),
                             tuple(str(v) for v in spec.get("enum", []) if v is not None))
                       for name, spec in props.items())
        is_public = t in public
        out.append(EventType(
            type=t, meaning=EVENTS.get(t, ""), topic=topic_of(t, prefix), public=is_public, fields=fields,
            example=json.dumps(envelope(t, example_data(schema)), ensure_ascii=False, indent=2),
            schema_url=f"/api/v1/public/schemas/{t}.json" if is_public else None,
            details=schema.get("description", "")))
    return sorted(out, key=lambda e: (not e.public, e.type))


def envelope_fields() -> tuple[Field, ...]:
    schema = copy.deepcopy(schema_for("envelope"))
    required = set(schema.get("required", []))
    return tuple(Field(n, type_of(s), n in required, ENVELOPE.get(n, "")) for n, s in schema["properties"].items())


ENVELOPE = {
    "specversion": N_("CloudEvents version, always 1.0"),
    "id": N_("the event's unique id: consumers drop repeats by it"),
    "source": N_("the service that wrote the event"),
    "type": N_("the event type with its version"),
    "time": N_("when it happened"),
    "subject": N_("what the event is about; the Kafka message key, so one subject's events stay in order"),
    "datacontenttype": N_("always application/json"),
    "dataschema": N_("the JSON Schema of data"),
    "data": N_("the fields listed for each type below"),
    "traceparent": N_("internal events only: the trace of the act that wrote the event (W3C traceparent)"),
    "tracestate": N_("internal events only: the trace state that goes with traceparent"),
}


def msgids() -> set[str]:
    """Every text the catalogue page may show, for the catalogs' tests."""
    return set(EVENTS.values()) | set(FIELDS.values()) | set(ENVELOPE.values())
