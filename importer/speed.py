"""Makes event validation in this process check each schema once.

`kezek.events.validate` calls `jsonschema.validate`, which checks the schema
against the JSON Schema meta-schema on every call: about 30 ms of CPU per
event on this machine, most of the cost of one queue entry. An import writes
hundreds of thousands of events, so `kezek import` swaps in a validator that
is built once per event type and reports exactly the same errors. (The same
change in kezek/events would speed up every service; it belongs to the core.)"""
from __future__ import annotations

import functools

import jsonschema

import kezek.events as events


@functools.cache
def _validator(event_type: str) -> jsonschema.protocols.Validator:
    schema = events.schema_for(event_type)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate(event: events.Event) -> None:
    error = jsonschema.exceptions.best_match(_validator(event.type).iter_errors(event.data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise events.InvalidEvent(f"{event.type}: data at {where}: {error.message}") from error


def cache_event_validation() -> None:
    if events.validate is not _validate:
        events.validate = _validate
