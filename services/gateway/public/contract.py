"""The public contract: the AsyncAPI 3 document of kezek.public.v1 and the
JSON Schema of each public event type.

docs/events/asyncapi.yaml is rendered from kezek/events/schemas by
`render_asyncapi()` (`kezek schemas-lock` rewrites it; a test fails when the
file and the schemas disagree), so the document can never drift from what
the stream carries."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from kezek.events import schema_for
from services.gateway.public.projection import public_types

ROOT = Path(__file__).resolve().parents[3]
ASYNCAPI_PATH = ROOT / "docs" / "events" / "asyncapi.yaml"
CONTRACT_VERSION = "1.0.0"

VERSIONING = """\
## Versioning rules

- The topic is `kezek.public.v1`; every message is a CloudEvents 1.0 envelope
  whose `type` names the event and its version (`public.referral.issued.v1`),
  by the CloudEvents Kafka binding in structured mode: the value is the JSON
  envelope, the header `content-type` is `application/cloudevents+json;
  charset=UTF-8`. The message key is the envelope's `subject` (the
  pseudonymous child, or the kindergarten for places), so one subject's
  events stay in order. `dataschema` is the URL of the type's JSON Schema.
- Within a version, changes are additive only: a new optional property, a
  wider type, a new enum value, a looser limit. Consumers must ignore
  properties they do not know.
- Anything else is a new version of the type (`....v2`), published beside
  the old one for a transition period announced in advance: removing or
  renaming a property, making one required, narrowing a type, an enum, a
  pattern or a limit, forbidding extra properties.
- The test suite compares every schema with a frozen snapshot
  (`kezek/events/schemas.lock.json`) and fails on an incompatible change;
  `kezek schemas-lock` refreshes the snapshot after an additive one.
- A breaking change of the envelope itself would open a new topic
  (`kezek.public.v2`).

## Personal data

None. Children and referrals appear only as pseudonyms: keyed hashes
(HMAC-SHA256) that are stable for a child and cannot be reversed without
Kezek's key. No name, PIN, address, phone or e-mail is ever published.

## Webhooks

Systems that cannot speak Kafka register a URL and event types through the
gateway's admin API (`POST /api/v1/public/admin/webhooks`). Each event is
POSTed as the same CloudEvents JSON with the header
`Kezek-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with
the subscription's secret>`; refuse a request whose timestamp is more than 5
minutes old. Answer 2xx to accept; anything else is retried with exponential
backoff. Deliveries of one subject are in order: a failing one holds back
later ones of the same subject only. Headers `Kezek-Event-Id` (deduplicate
on it), `Kezek-Event-Type`, `Kezek-Subject`, `Kezek-Offset`
(`<partition>:<offset>` on the topic) and `Kezek-Attempt` come with each
delivery; `POST /api/v1/public/admin/webhooks/{id}/replay` delivers again
from an offset.
"""


def public_schema(event_type: str) -> dict:
    if event_type != "envelope" and event_type not in public_types():
        raise KeyError(event_type)
    return schema_for(event_type)


def _embedded(schema: dict) -> dict:
    out = copy.deepcopy(schema)
    out.pop("$schema", None)
    out.pop("$id", None)
    return out


def render_asyncapi() -> dict:
    types = public_types()
    envelope = _embedded(schema_for("envelope"))
    # The tracing extension is for Kezek's own events: public ones carry none.
    for internal in ("traceparent", "tracestate"):
        envelope["properties"].pop(internal, None)
    messages, schemas = {}, {}
    for t in types:
        schema = schema_for(t)
        schemas[t] = _embedded(schema)
        payload = copy.deepcopy(envelope)
        payload["title"] = t
        payload["properties"]["type"] = {"const": t}
        payload["properties"]["data"] = {"$ref": f"#/components/schemas/{t}"}
        messages[t] = {
            "name": t,
            "title": t,
            "summary": schema.get("description", ""),
            "contentType": "application/cloudevents+json",
            "headers": {"type": "object", "properties": {"content-type": {
                "const": "application/cloudevents+json; charset=UTF-8",
                "description": "the CloudEvents Kafka binding's structured mode"}}},
            "bindings": {"kafka": {"key": {"type": "string", "description": "the envelope's subject"},
                                   "bindingVersion": "0.5.0"}},
            "payload": payload,
        }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:kezek:public-events",
        "info": {
            "title": "Kezek public events",
            "version": CONTRACT_VERSION,
            "description": "Every change of an application, a referral and the register of places in Kezek, the "
                           "electronic admission queue for state kindergartens, for statistics offices, the state "
                           "services app and other ministries. JSON Schema of each type: "
                           "`GET /api/v1/public/schemas/{type}.json` on the gateway.\n\n" + VERSIONING,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                      "description": "the broker of a local `make run`; ask the operator for production's"},
        },
        "channels": {
            "public": {
                "address": "kezek.public.v1",
                "title": "Public events",
                "description": "Keyed by subject; 3 partitions by default.",
                "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
            },
        },
        "operations": {
            "receivePublicEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/public"},
                "summary": "Subscribe to the public stream (Kafka consumer or webhook).",
                "messages": [{"$ref": f"#/channels/public/messages/{t}"} for t in types],
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    # Multi-line prose as a literal block, readable in the file.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def asyncapi_yaml() -> str:
    return ("# Generated from kezek/events/schemas by `kezek schemas-lock`; do not edit by hand.\n"
            + yaml.dump(render_asyncapi(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))


def write_asyncapi(path: Path = ASYNCAPI_PATH) -> bool:
    """Rewrites the document; True when it changed."""
    text = asyncapi_yaml()
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True
