"""The public projection: which internal facts may leave Kezek, and in what shape.

An ALLOW-list. Every public event is built field by field from values this
module names: keyed-hash pseudonyms (never the PIN, the application id or
the referral id themselves), the cohort, the category, the district, the
language, kindergarten ids, deadlines, counts and positions. Nothing is
copied from the input by default, so a field a producer adds tomorrow (a
name, a phone, an address, free text) cannot reach the public topic.

Each allowed value must also have the shape its kind has (a category code,
a territory code, an ISO date...), so a PIN, a phone number, an e-mail or
an address put by mistake into an allowed field is dropped too; a required
value that fails its shape drops the whole event.

Pure: standard library only, no I/O. The projector (projector.py) keeps
what it learns (child, referral, kindergarten facts) and writes the result.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from workflows import rules

# ------------------------------------------------------------------ shapes

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
# SOATE (Kyrgyzstan, 14 digits starting 417: a PIN starts with its sex digit
# 1 or 2, so never matches), KATO (Kazakhstan, 9 digits), or a slug.
_DISTRICT = re.compile(r"^(417[0-9]{11}|[0-9]{9}|[a-z][a-z0-9_-]{0,39})$")
_KINDERGARTEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_LONG_DIGITS = re.compile(r"[0-9]{10}")  # a PIN (14), an IIN (12) or a phone number inside an id


def clean_code(value: Any) -> str | None:
    return value if isinstance(value, str) and _CODE.match(value) else None


def clean_language(value: Any) -> str | None:
    return value if isinstance(value, str) and _LANGUAGE.match(value) else None


def clean_district(value: Any) -> str | None:
    return value if isinstance(value, str) and _DISTRICT.match(value) else None


def clean_kindergarten(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        value = str(value)  # old registers number their kindergartens
    if isinstance(value, str) and _KINDERGARTEN.match(value) and not _LONG_DIGITS.search(value):
        return value
    return None


def clean_int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def clean_cohort(value: Any) -> int | None:
    return clean_int(value, 1990, 2100)


def clean_moment(value: Any) -> str | None:
    """An aware ISO 8601 moment, re-serialised (so only a moment passes)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.isoformat()


def clean_day(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.date().isoformat()


def cohort_of_birth_date(value: Any) -> int | None:
    day = clean_day(value)
    return clean_cohort(int(day[:4])) if day else None


# -------------------------------------------------------------- pseudonyms


class Pseudonyms:
    """Keyed hashes: stable for one key, not reversible without it, and
    different per kind, so a child's ref never equals a referral's."""

    def __init__(self, key: bytes):
        if not key:
            raise ValueError("the pseudonym key must not be empty")
        self._key = key

    def _ref(self, kind: str, *parts: str) -> str:
        msg = "\x00".join(("kezek", kind, *parts)).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def child(self, country: str, pin: str) -> str:
        """Per child, not per application: a child who leaves the queue and
        joins again keeps its ref."""
        return self._ref("child", country, pin)

    def referral(self, referral_id: str) -> str:
        return self._ref("referral", referral_id)

    def entry(self, application_id: str) -> str:
        """For a queue entry whose child's PIN never reached the projector
        (moved in by an import): stable for the entry."""
        return self._ref("entry", application_id)


# ------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Child:
    """What the projector keeps about a queue entry: public facts only."""
    child_ref: str
    cohort: int | None = None
    category: str | None = None
    district: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class ReferralFacts:
    referral_ref: str
    application_id: str
    kindergarten_id: str | None = None
    cohort: int | None = None
    category: str | None = None
    language: str | None = None


class Lookup(Protocol):
    def child(self, application_id: str) -> Child | None: ...
    def referral(self, referral_id: str) -> ReferralFacts | None: ...
    def district_of(self, kindergarten_id: str) -> str | None: ...


@dataclass(frozen=True)
class PublicFact:
    type: str
    subject: str
    data: dict[str, Any]


@dataclass
class Outcome:
    facts: list[PublicFact] = field(default_factory=list)
    learned_child: tuple[str, Child] | None = None            # application id -> child
    learned_referral: tuple[str, ReferralFacts] | None = None  # referral id -> facts
    learned_kindergarten: tuple[str, str] | None = None       # kindergarten id -> district
    park_until_known: str | None = None  # application id this event waits for
    skipped: str | None = None           # why nothing was published


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _ident(value: Any) -> str | None:
    """An internal id used only as a hash input or a lookup key, never output."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= 100 else None


# --------------------------------------------------------------- the rules

CHILD_LEARNED = ("application.submitted.v1",)  # carries the PIN: learned, never published itself
APPLICATION_QUEUED = ("application.queued.v1", "application.imported.v1")
APPLICATION_STATE = {
    "application.removed.v1": "public.application.removed.v1",
    "application.resumed.v1": "public.application.resumed.v1",
    "application.paused.v1": "public.application.paused.v1",
    "application.aged_out.v1": "public.application.aged_out.v1",
    "application.left.v1": "public.application.left.v1",
}
APPLICATION_GENERAL = ("application.returned_to_general_queue.v1",)
REFERRAL_TYPES = {
    f"referral.{name}.v1": f"public.referral.{name}.v1"
    for name in ("issued", "imported", "privilege_confirmed", "privilege_rejected", "certificate_requested",
                 "extended", "expired", "cancelled", "enrolled")
}
# The state a fact leaves the referral in, when the fact does not say (the
# referral's rules: workflows/rules.py).
REFERRAL_STATE = {fact.removeprefix("referral."): state.value for fact, state in rules.STATE_AFTER_FACT.items()}
PLACE_TYPES = {f"place.{name}.v1": f"public.place.{name}.v1"
               for name in ("published", "withdrawn", "returned", "freed")}
VALID_STATES = {state.value for state in rules.ReferralState}


def consumed_types() -> list[str]:
    return sorted({*CHILD_LEARNED, *APPLICATION_QUEUED, *APPLICATION_STATE, *APPLICATION_GENERAL,
                   "application.position_changed.v1", *REFERRAL_TYPES, *PLACE_TYPES})


def public_types() -> list[str]:
    return sorted({"public.application.queued.v1", "public.application.position_changed.v1",
                   "public.application.returned_to_general_queue.v1", *APPLICATION_STATE.values(),
                   *REFERRAL_TYPES.values(), *PLACE_TYPES.values()})


def project(event_type: str, data: dict[str, Any], lookup: Lookup, names: Pseudonyms,
            *, country: str = "KG") -> Outcome:
    """The public facts (at most a few) for one internal event."""
    if not isinstance(data, dict):
        return Outcome(skipped="data is not an object")
    handler = _handler(event_type)
    if handler is None:
        return Outcome(skipped=f"{event_type} is not published")
    return handler(event_type, data, lookup, names, country)


def _handler(event_type: str) -> Callable | None:
    if event_type in CHILD_LEARNED:
        return _submitted
    if event_type in APPLICATION_QUEUED:
        return _queued
    if event_type in APPLICATION_STATE:
        return _application_state
    if event_type in APPLICATION_GENERAL:
        return _to_general
    if event_type == "application.position_changed.v1":
        return _position
    if event_type in REFERRAL_TYPES:
        return _referral
    if event_type in PLACE_TYPES:
        return _place
    return None


def _submitted(event_type, data, lookup, names, country) -> Outcome:
    """The registration's event: the only one with the child's PIN. The
    projector keeps the pseudonym and public facts; the queue's
    application.queued is what gets published (it may still refuse)."""
    application_id = _ident(data.get("application_id"))
    pin = data.get("child_pin")
    if not application_id or not isinstance(pin, str) or not pin.isdigit():
        return Outcome(skipped="no application id or child PIN")
    child_country = data.get("country") if data.get("country") in ("KG", "KZ") else country
    child = Child(
        child_ref=names.child(child_country, pin),
        cohort=cohort_of_birth_date(data.get("child_birth_date")),
        category=clean_code(data.get("category")),
        district=clean_district(data.get("district")),
        language=clean_language(data.get("language")),
    )
    return Outcome(learned_child=(application_id, child), skipped="learned the child; published on application.queued")


def _queued(event_type, data, lookup, names, country) -> Outcome:
    application_id, known = _known_child(data, lookup)
    if known is None and application_id and data.get("imported") is True:
        # Moved in by an import: no registration event with the PIN comes,
        # so the entry names the child now (what the sweep gives a parked
        # entry after its grace), and its later events are not parked.
        known = Child(names.entry(application_id))
    if known is None:
        return Outcome(park_until_known=application_id, skipped="child not known yet") if application_id \
            else Outcome(skipped="no application id")
    child = Child(known.child_ref, clean_cohort(data.get("cohort")) or known.cohort,
                  clean_code(data.get("category")) or known.category, known.district,
                  clean_language(data.get("language")) or known.language)
    out = Outcome(learned_child=(application_id, child))
    queued_on = clean_day(data.get("queue_date"))
    if child.cohort is None or child.category is None or child.language is None or queued_on is None:
        out.skipped = "cohort, category, language or queue date missing or malformed"
        return out
    prefs = data.get("preferences")
    preferences = [k for k in (clean_kindergarten(p) for p in prefs[:10]) if k] if isinstance(prefs, list) else None
    out.facts.append(PublicFact("public.application.queued.v1", child.child_ref, _compact({
        "child_ref": child.child_ref, "cohort": child.cohort, "category": child.category,
        "language": child.language, "queued_on": queued_on, "preferences": preferences,
    }) | {"district": child.district}))
    return out


def _known_child(data, lookup) -> tuple[str | None, Child | None]:
    application_id = _ident(data.get("application_id"))
    return application_id, (lookup.child(application_id) if application_id else None)


def _application_state(event_type, data, lookup, names, country) -> Outcome:
    application_id, child = _known_child(data, lookup)
    if child is None:
        return Outcome(park_until_known=application_id, skipped="child not known yet") if application_id \
            else Outcome(skipped="no application id")
    until = clean_moment(data.get("until")) if event_type == "application.paused.v1" else None
    if event_type == "application.paused.v1" and until is None:
        return Outcome(skipped="stop-list end missing or malformed")
    left = clean_kindergarten(data.get("kindergarten_id")) if event_type == "application.left.v1" else None
    return Outcome(facts=[PublicFact(APPLICATION_STATE[event_type], child.child_ref, _compact({
        "child_ref": child.child_ref, "cohort": child.cohort, "category": child.category, "district": child.district,
        "until": until, "kindergarten_id": left,
    }))])


def _to_general(event_type, data, lookup, names, country) -> Outcome:
    application_id, child = _known_child(data, lookup)
    if child is None:
        return Outcome(park_until_known=application_id, skipped="child not known yet") if application_id \
            else Outcome(skipped="no application id")
    category = clean_code(data.get("category")) or "general"
    from_category = clean_code(data.get("from_category")) or child.category
    updated = Child(child.child_ref, child.cohort, category, child.district, child.language)
    return Outcome(learned_child=(application_id, updated), facts=[PublicFact(
        "public.application.returned_to_general_queue.v1", child.child_ref, _compact({
            "child_ref": child.child_ref, "cohort": child.cohort, "category": category,
            "from_category": from_category, "district": child.district,
        }))])


def _position(event_type, data, lookup, names, country) -> Outcome:
    application_id, child = _known_child(data, lookup)
    if child is None:
        return Outcome(park_until_known=application_id, skipped="child not known yet") if application_id \
            else Outcome(skipped="no application id")
    position = clean_int(data.get("position"), 1, 10**7)
    if position is None:
        return Outcome(skipped="position missing or malformed")
    previous = clean_int(data.get("previous_position"), 1, 10**7)
    return Outcome(facts=[PublicFact("public.application.position_changed.v1", child.child_ref, _compact({
        "child_ref": child.child_ref, "position": position, "previous_position": previous,
        "kindergarten_id": clean_kindergarten(data.get("kindergarten_id")),
        "cohort": child.cohort, "category": child.category,
    }))])


def _referral(event_type, data, lookup, names, country) -> Outcome:
    referral_id = _ident(data.get("referral_id"))
    if referral_id is None:
        return Outcome(skipped="no referral id")
    known = lookup.referral(referral_id)
    application_id = _ident(data.get("application_id")) or (known.application_id if known else None)
    child = lookup.child(application_id) if application_id else None
    if child is None:
        return Outcome(park_until_known=application_id, skipped="child not known yet") if application_id \
            else Outcome(skipped="no application id")
    facts = ReferralFacts(
        referral_ref=names.referral(referral_id),
        application_id=application_id,
        kindergarten_id=clean_kindergarten(data.get("kindergarten_id", data.get("kindergarten")))
        or (known.kindergarten_id if known else None),
        cohort=clean_cohort(data.get("cohort")) or (known.cohort if known else None) or child.cohort,
        category=clean_code(data.get("category")) or (known.category if known else None) or child.category,
        language=clean_language(data.get("language")) or (known.language if known else None) or child.language,
    )
    out = Outcome(learned_referral=(referral_id, facts))
    if facts.kindergarten_id is None:
        out.skipped = "kindergarten missing or malformed"
        return out
    name = event_type.split(".")[1]
    state = data.get("state") if isinstance(data.get("state"), str) and data["state"] in VALID_STATES else None
    if state is None:
        if name == "issued":
            state = rules.first_state(data.get("needs_confirmation") is True).value
        elif name == "imported":   # it has no state of its own to fall back on
            out.skipped = "state missing or malformed"
            return out
        else:
            state = REFERRAL_STATE[name]
    needs = data.get("needs_confirmation")
    out.facts.append(PublicFact(REFERRAL_TYPES[event_type], child.child_ref, _compact({
        "referral_ref": facts.referral_ref, "child_ref": child.child_ref, "kindergarten_id": facts.kindergarten_id,
        "district": lookup.district_of(facts.kindergarten_id), "cohort": facts.cohort, "category": facts.category,
        "language": facts.language, "state": state, "deadline": clean_moment(data.get("deadline")),
        "needs_confirmation": needs if isinstance(needs, bool) else None,
        "stoplist_until": clean_moment(data.get("stoplist_until")),
    })))
    return out


def _place(event_type, data, lookup, names, country) -> Outcome:
    kindergarten = clean_kindergarten(data.get("kindergarten_id", data.get("kindergarten")))
    cohort = clean_cohort(data.get("cohort"))
    language = clean_language(data.get("language"))
    count = clean_int(data.get("count", data.get("places", 1)), 1, 100_000)
    if None in (kindergarten, cohort, language, count):
        return Outcome(skipped="kindergarten, cohort, language or count missing or malformed")
    district = clean_district(data.get("district"))
    out = Outcome(learned_kindergarten=(kindergarten, district) if district else None)
    out.facts.append(PublicFact(PLACE_TYPES[event_type], kindergarten, _compact({
        "kindergarten_id": kindergarten, "district": district or lookup.district_of(kindergarten),
        "cohort": cohort, "language": language, "count": count,
        "for_category": clean_code(data.get("for_category", data.get("category"))),
    })))
    return out
